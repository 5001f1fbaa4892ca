-- Findings kept as running counts, as coverage is (0002).
--
-- Counting the checklist answers of every current report on each request read about eight
-- million answer rows at a million reports: five seconds on SQLite, long enough for the other
-- questions to queue behind it. These two tables hold the same counts, per mission, kind and
-- region, and `ingest_batch` keeps them in the batch's transaction (`update_summaries` in
-- src/ingest.rs, `Tally` in src/findings.rs): a report that becomes current and is not
-- quarantined adds its answers and assessment, the one it replaces (if that was not
-- quarantined) takes its own away. A station's region decides where its reports count, so a
-- mission import that changes the stations counts them again (`recount` in src/findings.rs).
--
-- The answer rows themselves (`report_answers`, 0003) go: writing ten of them per report made
-- each batch's commit a third larger. Where a report's answers are needed again, its payload
-- has them. PostgreSQL keeps `report_answers` and counts on each request; its plain indexes
-- answer that in milliseconds.

-- How many current, unquarantined reports gave `answer` to `question`. `free_text` is 1 for
-- an answer too long to tabulate (report_answers.answer IS NULL), whose `answer` is then ''.
CREATE TABLE answer_tally (
    mission    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    region     TEXT NOT NULL,
    question   TEXT NOT NULL,
    free_text  BOOLEAN NOT NULL,
    answer     TEXT NOT NULL,
    reports    BIGINT NOT NULL,
    PRIMARY KEY (mission, kind, region, question, free_text, answer)
) WITHOUT ROWID;

INSERT INTO answer_tally (mission, kind, region, question, free_text, answer, reports)
    SELECT r.mission, r.kind, s.region, a.question, a.answer IS NULL, COALESCE(a.answer, ''), COUNT(*)
    FROM reports r
    JOIN report_answers a ON a.revision_seq = r.revision_seq
    JOIN stations s ON s.mission_id = r.mission AND s.code = r.station
    WHERE NOT r.quarantined
    GROUP BY r.mission, r.kind, s.region, a.question, a.answer IS NULL, COALESCE(a.answer, '');

DROP TABLE report_answers;

-- How many current, unquarantined reports gave each overall assessment.
CREATE TABLE assessment_tally (
    mission     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    region      TEXT NOT NULL,
    assessment  TEXT NOT NULL,
    reports     BIGINT NOT NULL,
    PRIMARY KEY (mission, kind, region, assessment)
) WITHOUT ROWID;

INSERT INTO assessment_tally (mission, kind, region, assessment, reports)
    SELECT r.mission, r.kind, s.region, r.assessment, COUNT(*)
    FROM reports r
    JOIN stations s ON s.mission_id = r.mission AND s.code = r.station
    WHERE NOT r.quarantined AND r.assessment IS NOT NULL
    GROUP BY r.mission, r.kind, s.region, r.assessment;
