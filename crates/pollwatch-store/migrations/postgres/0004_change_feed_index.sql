-- The change feed (`GET /api/v1/events`) reads the kinds of the revisions after a sequence
-- number every 250 ms: from this index alone (an index-only scan), not from the rows with
-- their payloads.
CREATE INDEX report_revisions_seq_kind ON report_revisions (seq, kind);
