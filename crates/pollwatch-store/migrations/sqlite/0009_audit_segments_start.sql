-- Two appends that read the same head could both commit if their segments ended at different
-- positions: no two segments may start at one position either.
CREATE UNIQUE INDEX audit_segments_first ON audit_segments (first_position);
