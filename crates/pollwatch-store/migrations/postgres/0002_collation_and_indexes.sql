-- Identifiers and codes compare byte by byte ("C" collation), as SQLite compares them: both
-- backends then order reports the same way, and the indexes keyed by them no longer go through
-- the locale's collation for every comparison (a profile of the ingest showed strcoll there).

ALTER TABLE report_revisions
    ALTER COLUMN report_id TYPE TEXT COLLATE "C",
    ALTER COLUMN mission TYPE TEXT COLLATE "C",
    ALTER COLUMN observer TYPE TEXT COLLATE "C",
    ALTER COLUMN station TYPE TEXT COLLATE "C",
    ALTER COLUMN kind TYPE TEXT COLLATE "C";

ALTER TABLE conflicts
    ALTER COLUMN report_id TYPE TEXT COLLATE "C",
    ALTER COLUMN content_hash TYPE TEXT COLLATE "C";

ALTER TABLE reports
    ALTER COLUMN report_id TYPE TEXT COLLATE "C",
    ALTER COLUMN mission TYPE TEXT COLLATE "C",
    ALTER COLUMN observer TYPE TEXT COLLATE "C",
    ALTER COLUMN station TYPE TEXT COLLATE "C",
    ALTER COLUMN kind TYPE TEXT COLLATE "C";

ALTER TABLE report_flags ALTER COLUMN code TYPE TEXT COLLATE "C";

ALTER TABLE protocols ALTER COLUMN contest TYPE TEXT COLLATE "C";

ALTER TABLE protocol_votes
    ALTER COLUMN contest TYPE TEXT COLLATE "C",
    ALTER COLUMN choice TYPE TEXT COLLATE "C";

-- Incidents by category and severity from an index over incident reports only, as on SQLite,
-- rather than an index on every report's kind.
DROP INDEX reports_kind;
CREATE INDEX reports_incidents ON reports (mission, quarantined, incident_category, incident_severity)
    WHERE kind = 'incident';
