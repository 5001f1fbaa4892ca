-- Review: what operators decide about held reports and disputed stations, and the audit chain
-- that makes every stored revision and every decision tamper-evident (docs/review.md).

-- The review state of each report's current revision: `accepted` (counted), `held` (flagged, not
-- counted) or `rejected` (kept, never counted). A revision arrives accepted when validation
-- flagged nothing and held otherwise; `decision` is the `review_log` entry that set the state
-- since, NULL while it is the state it arrived with. `quarantined` stays what every query
-- reads: true whenever the state is not `accepted`.
ALTER TABLE reports ADD COLUMN review_state TEXT NOT NULL DEFAULT 'accepted';
ALTER TABLE reports ADD COLUMN decision BIGINT;
UPDATE reports SET review_state = 'held' WHERE quarantined;

-- Everything reviewers did, in order: decisions on a report (`accept`, `reject`, `hold`),
-- comments (`comment`) and disputed stations settled (`settle`: `chosen` is the report whose
-- protocol counts for `contest`, NULL for none until a recount). Never updated, never deleted.
CREATE TABLE review_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    mission     TEXT NOT NULL,
    action      TEXT NOT NULL,
    report_id   TEXT,
    revision    BIGINT,
    station     TEXT,
    contest     TEXT,
    chosen      TEXT,
    from_state  TEXT,
    to_state    TEXT,
    reviewer    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at_us       BIGINT NOT NULL
);
CREATE INDEX review_log_report ON review_log (report_id, id);

-- Which report's protocol counts for a disputed station's contest (NULL: none until a recount).
CREATE TABLE protocol_choices (
    mission    TEXT NOT NULL,
    station    TEXT NOT NULL,
    contest    TEXT NOT NULL,
    report_id  TEXT,
    log_id     BIGINT NOT NULL,
    PRIMARY KEY (mission, station, contest)
) WITHOUT ROWID;

-- The audit chain: one entry per revision stored, conflicting version kept and review action,
-- in the order committed. `hash` is the hex SHA-256 of the previous entry's hash (64 zeros
-- before the first), a line feed, and the entry's text. A revision's text is rebuilt from its
-- row (`revision_seq`) rather than kept twice: `entry` is NULL for revisions and holds the text
-- of the others (docs/review.md, docs/benchmarks.md).
CREATE TABLE audit_chain (
    position      INTEGER PRIMARY KEY,
    -- The revision an entry records (NULL for other entries), for the export's join.
    revision_seq  BIGINT,
    entry         TEXT,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_chain_revision ON audit_chain (revision_seq);
