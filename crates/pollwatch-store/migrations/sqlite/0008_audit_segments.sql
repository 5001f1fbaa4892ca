-- The audit chain stored a row a segment instead of a row an entry (docs/review.md,
-- docs/benchmarks.md): the entries one append wrote, consecutive in the chain, kept together.
CREATE TABLE audit_segments (
    -- The positions of its first and last entries.
    last_position  INTEGER PRIMARY KEY,
    first_position BIGINT NOT NULL,
    -- The lowest and highest revision seq it records (NULL if none), at most 4,096 apart: a
    -- revision's entry is in a segment whose `min_seq` is at most 4,095 below its seq.
    min_seq        BIGINT,
    max_seq        BIGINT,
    -- The hex hash of its last entry, for the chain's head.
    last_hash      TEXT NOT NULL,
    -- Per entry, comma-separated: the seq of the revision it records, or nothing for an entry
    -- whose text is kept.
    seqs           TEXT NOT NULL,
    -- A JSON array of the texts kept, in order (NULL if none).
    texts          TEXT,
    -- Per entry, its 32-byte hash.
    hashes         BLOB NOT NULL
);
CREATE INDEX audit_segments_seq ON audit_segments (min_seq);

INSERT INTO audit_segments (last_position, first_position, min_seq, max_seq, last_hash, seqs, texts, hashes)
SELECT position, position, revision_seq, revision_seq, hash, COALESCE(CAST(revision_seq AS TEXT), ''),
       CASE WHEN revision_seq IS NULL THEN json_array(entry) END, unhex(hash)
FROM audit_chain;
DROP TABLE audit_chain;
