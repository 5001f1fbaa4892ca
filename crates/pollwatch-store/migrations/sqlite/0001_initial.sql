-- pollwatch store, SQLite. Timestamps are microseconds since the Unix epoch (UTC) so that both
-- backends compare and sort them the same way.

CREATE TABLE missions (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    election_day  TEXT NOT NULL,
    time_zone     TEXT NOT NULL,
    polls_open    TEXT NOT NULL,
    polls_close   TEXT NOT NULL
);

CREATE TABLE regions (
    mission_id  TEXT NOT NULL REFERENCES missions (id),
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    position    BIGINT NOT NULL,
    PRIMARY KEY (mission_id, code)
);

CREATE TABLE contests (
    mission_id  TEXT NOT NULL REFERENCES missions (id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    PRIMARY KEY (mission_id, id)
);

CREATE TABLE choices (
    mission_id  TEXT NOT NULL,
    contest     TEXT NOT NULL,
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    position    BIGINT NOT NULL,
    PRIMARY KEY (mission_id, contest, code)
);

CREATE TABLE stations (
    mission_id         TEXT NOT NULL REFERENCES missions (id),
    code               TEXT NOT NULL,
    name               TEXT NOT NULL,
    region             TEXT NOT NULL,
    district           TEXT,
    registered_voters  BIGINT NOT NULL,
    lat                DOUBLE PRECISION,
    lon                DOUBLE PRECISION,
    abroad             BOOLEAN NOT NULL,
    PRIMARY KEY (mission_id, code)
);

CREATE TABLE observers (
    mission_id   TEXT NOT NULL REFERENCES missions (id),
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    team         TEXT NOT NULL,
    device_user  TEXT NOT NULL,
    PRIMARY KEY (mission_id, id)
);

-- Every accepted revision, as received: the audit trail. The first content seen for a
-- (report_id, revision) is kept here; different content for the same pair goes to `conflicts`.
CREATE TABLE report_revisions (
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
    UNIQUE (report_id, revision)
);
CREATE INDEX report_revisions_observer ON report_revisions (mission, observer, received_at_us);

-- Same report id and revision, different content: both versions are kept for operators.
CREATE TABLE conflicts (
    report_id       TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    content_hash    TEXT NOT NULL,
    payload         TEXT NOT NULL,
    sender          TEXT,
    received_at_us  BIGINT NOT NULL,
    PRIMARY KEY (report_id, revision, content_hash)
);

-- The current (highest) revision of each report.
CREATE TABLE reports (
    report_id       TEXT PRIMARY KEY,
    revision        BIGINT NOT NULL,
    revision_seq    BIGINT NOT NULL,
    mission         TEXT NOT NULL,
    observer        TEXT NOT NULL,
    station         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    observed_at_us  BIGINT NOT NULL,
    received_at_us  BIGINT NOT NULL,
    assessment      TEXT,
    incident_category  TEXT,
    incident_severity  TEXT,
    quarantined     BOOLEAN NOT NULL
);
CREATE INDEX reports_station_kind ON reports (mission, station, kind, observed_at_us, report_id);
CREATE INDEX reports_revision_seq ON reports (revision_seq);
CREATE INDEX reports_kind ON reports (mission, kind, quarantined);

-- Why a revision is held for review. Rows derived from a revision are keyed by its `seq`: they
-- are written once, by the transaction that stored the revision, queries join them to the
-- current revision, and an ever-growing integer key appends to the index instead of scattering
-- writes the way random report ids do.
CREATE TABLE report_flags (
    revision_seq  BIGINT NOT NULL,
    code       TEXT NOT NULL,
    path       TEXT NOT NULL,
    message    TEXT NOT NULL
);
CREATE INDEX report_flags_revision ON report_flags (revision_seq);
CREATE INDEX report_flags_code ON report_flags (code);

-- The counting protocols of every revision, for tabulation.
CREATE TABLE protocols (
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
);

CREATE TABLE protocol_votes (
    revision_seq  BIGINT NOT NULL,
    contest       TEXT NOT NULL,
    choice        TEXT NOT NULL,
    votes         BIGINT NOT NULL,
    PRIMARY KEY (revision_seq, contest, choice)
);
