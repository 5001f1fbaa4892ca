-- Two appends that read the same head could both commit if their segments ended at different
-- positions: no two segments may start at one position either, so the second fails and
-- retries instead of forking the chain.
CREATE UNIQUE INDEX audit_segments_first ON audit_segments (first_position);
