-- Review: what operators decide about held reports and disputed stations, and the audit chain
-- that makes every stored revision and every decision tamper-evident (docs/review.md). The
-- tables are those of SQLite's migration 0006; its comments say what each column holds.

ALTER TABLE reports ADD COLUMN review_state TEXT COLLATE "C" NOT NULL DEFAULT 'accepted';
ALTER TABLE reports ADD COLUMN decision BIGINT;
UPDATE reports SET review_state = 'held' WHERE quarantined;

CREATE TABLE review_log (
    id          BIGSERIAL PRIMARY KEY,
    mission     TEXT COLLATE "C" NOT NULL,
    action      TEXT COLLATE "C" NOT NULL,
    report_id   TEXT COLLATE "C",
    revision    BIGINT,
    station     TEXT COLLATE "C",
    contest     TEXT COLLATE "C",
    chosen      TEXT COLLATE "C",
    from_state  TEXT COLLATE "C",
    to_state    TEXT COLLATE "C",
    reviewer    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at_us       BIGINT NOT NULL
);
CREATE INDEX review_log_report ON review_log (report_id, id);

CREATE TABLE protocol_choices (
    mission    TEXT COLLATE "C" NOT NULL,
    station    TEXT COLLATE "C" NOT NULL,
    contest    TEXT COLLATE "C" NOT NULL,
    report_id  TEXT COLLATE "C",
    log_id     BIGINT NOT NULL,
    PRIMARY KEY (mission, station, contest)
);

-- Appended under `pg_advisory_xact_lock` (src/audit.rs), so that concurrent workers make one
-- chain.
CREATE TABLE audit_chain (
    position      BIGINT PRIMARY KEY,
    -- The revision an entry records (NULL for other entries), for the export's join.
    revision_seq  BIGINT,
    entry         TEXT,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_chain_revision ON audit_chain (revision_seq);
