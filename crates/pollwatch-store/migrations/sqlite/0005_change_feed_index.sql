-- The change feed (`GET /api/v1/events`) reads the kinds of the revisions after a sequence
-- number every 250 ms. From the table, that read touches the rows with their payloads (a few
-- megabytes a second while a backlog drains, kept in each reading connection's page cache);
-- from this index, a few small pages.
CREATE INDEX report_revisions_seq_kind ON report_revisions (seq, kind);
