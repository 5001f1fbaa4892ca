-- Conflicts decided by a reviewer (docs/review.md). A revision can be stored more than once:
-- `variant` 0 is the content received first, which every revision arriving through the broker
-- is written as (so that a second content for it still finds the first and is kept aside in
-- `conflicts`); 1, 2, … are versions kept aside that a reviewer picked to count, copied here so
-- that they have a seq for their flags, answers and protocols. `reports.revision_seq` points at
-- the version in force.
ALTER TABLE report_revisions ADD COLUMN variant BIGINT NOT NULL DEFAULT 0;
ALTER TABLE report_revisions DROP CONSTRAINT report_revisions_report_id_revision_key;
ALTER TABLE report_revisions ADD CONSTRAINT report_revisions_report_id_revision_variant_key
    UNIQUE (report_id, revision, variant);
