-- Conflicts decided by a reviewer (docs/review.md). A revision can be stored more than once:
-- `variant` 0 is the content received first, which every revision arriving through the broker
-- is written as (so that a second content for it still finds the first and is kept aside in
-- `conflicts`); 1, 2, … are versions kept aside that a reviewer picked to count, copied here so
-- that they have a seq for their flags, answers and protocols. `reports.revision_seq` points at
-- the version in force. SQLite cannot change a table's constraint in place: the table is built
-- again, keeping every seq.
CREATE TABLE report_revisions_new (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id       TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    content_hash    TEXT NOT NULL,
    mission         TEXT NOT NULL,
    observer        TEXT NOT NULL,
    station         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    observed_at_us  BIGINT NOT NULL,
    payload         TEXT NOT NULL,
    flags           TEXT NOT NULL,
    sender          TEXT,
    redelivered     BOOLEAN NOT NULL,
    received_at_us  BIGINT NOT NULL,
    channel         TEXT NOT NULL DEFAULT 'amqp',
    variant         BIGINT NOT NULL DEFAULT 0,
    UNIQUE (report_id, revision, variant)
);
INSERT INTO report_revisions_new (seq, report_id, revision, content_hash, mission, observer, station, kind,
    observed_at_us, payload, flags, sender, redelivered, received_at_us, channel)
SELECT seq, report_id, revision, content_hash, mission, observer, station, kind, observed_at_us, payload,
    flags, sender, redelivered, received_at_us, channel FROM report_revisions;
DROP TABLE report_revisions;
ALTER TABLE report_revisions_new RENAME TO report_revisions;
CREATE INDEX report_revisions_seq_kind ON report_revisions (seq, kind);
