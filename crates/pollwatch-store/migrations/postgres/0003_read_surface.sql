-- What the read surface (the API and the operators' commands) needs beyond ingest.

-- How a revision reached the store. Every one so far came through the broker.
ALTER TABLE report_revisions ADD COLUMN channel TEXT NOT NULL DEFAULT 'amqp';

-- The checklist answers of every revision, for findings: `answer` is `yes` or `no`, the number
-- in decimal, or the text; NULL for a text longer than 64 characters (free text, counted as
-- answered but not tabulated; the payload keeps it). Written by `ingest_batch` with the
-- revision; revisions stored before this migration have none.
CREATE TABLE report_answers (
    revision_seq  BIGINT NOT NULL,
    question      TEXT COLLATE "C" NOT NULL,
    answer        TEXT COLLATE "C",
    PRIMARY KEY (revision_seq, question)
);

-- Newest incidents and held reports first, a page at a time.
CREATE INDEX reports_incidents_recent ON reports (mission, revision_seq) WHERE kind = 'incident';
CREATE INDEX reports_held ON reports (mission, revision_seq) WHERE quarantined;
-- A report's whole history.
CREATE INDEX conflicts_report ON conflicts (report_id);

-- Bearer tokens of the API: only the SHA-256 of each token is kept.
CREATE TABLE api_tokens (
    name           TEXT COLLATE "C" PRIMARY KEY,
    role           TEXT NOT NULL,
    hash           TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at_us  BIGINT NOT NULL
);
