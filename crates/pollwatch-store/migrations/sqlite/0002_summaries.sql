-- Fewer scattered index writes per report.
--
-- SQLite writes every page a transaction touched, whole, to the WAL at commit. An index whose key
-- puts each report of a batch somewhere else (the station, or the observer) touches a page per
-- report, and at 500 reports a batch those pages were most of what a commit wrote. Coverage and
-- observer activity are therefore kept as small summary tables (a few pages each) that
-- `ingest_batch` updates with one statement each per batch, in the batch's transaction (see
-- `update_summaries` in src/ingest.rs). Results and incidents keep indexes, each over the one
-- kind of report it reads. PostgreSQL logs row changes rather than pages and keeps the plain
-- indexes.

DROP INDEX reports_station_kind;
DROP INDEX report_revisions_observer;

DROP INDEX reports_kind;

-- The latest counting report per station (results, discrepancies).
CREATE INDEX reports_counting ON reports (mission, station, observed_at_us, report_id)
    WHERE kind = 'counting';

-- Incidents by category and severity.
CREATE INDEX reports_incidents ON reports (mission, quarantined, incident_category, incident_severity)
    WHERE kind = 'incident';

-- How many current reports of each kind each station has (coverage); rows are never deleted,
-- a count may fall to 0 when a correction moves a report to another station.
CREATE TABLE station_coverage (
    mission  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    station  TEXT NOT NULL,
    reports  BIGINT NOT NULL,
    PRIMARY KEY (mission, kind, station)
) WITHOUT ROWID;

INSERT INTO station_coverage (mission, kind, station, reports)
    SELECT mission, kind, station, COUNT(*) FROM reports GROUP BY mission, kind, station;

-- When each observer's latest revision was received (silent observers).
CREATE TABLE observer_activity (
    mission         TEXT NOT NULL,
    observer        TEXT NOT NULL,
    received_at_us  BIGINT NOT NULL,
    PRIMARY KEY (mission, observer)
) WITHOUT ROWID;

INSERT INTO observer_activity (mission, observer, received_at_us)
    SELECT mission, observer, MAX(received_at_us) FROM report_revisions GROUP BY mission, observer;

-- Counting protocols and their votes (a counting report writes two protocols and twenty vote
-- rows) stored in their primary key's order: one B-tree each instead of a table and its key.
CREATE TABLE protocols_by_key (
    revision_seq       BIGINT NOT NULL,
    contest            TEXT NOT NULL,
    registered_voters  BIGINT NOT NULL,
    ballots_received   BIGINT NOT NULL,
    ballots_issued     BIGINT NOT NULL,
    ballots_spoiled    BIGINT NOT NULL,
    ballots_unused     BIGINT NOT NULL,
    ballots_in_box     BIGINT NOT NULL,
    invalid            BIGINT NOT NULL,
    votes_digest       TEXT NOT NULL,
    PRIMARY KEY (revision_seq, contest)
) WITHOUT ROWID;
INSERT INTO protocols_by_key SELECT * FROM protocols;
DROP TABLE protocols;
ALTER TABLE protocols_by_key RENAME TO protocols;

CREATE TABLE protocol_votes_by_key (
    revision_seq  BIGINT NOT NULL,
    contest       TEXT NOT NULL,
    choice        TEXT NOT NULL,
    votes         BIGINT NOT NULL,
    PRIMARY KEY (revision_seq, contest, choice)
) WITHOUT ROWID;
INSERT INTO protocol_votes_by_key SELECT * FROM protocol_votes;
DROP TABLE protocol_votes;
ALTER TABLE protocol_votes_by_key RENAME TO protocol_votes;
