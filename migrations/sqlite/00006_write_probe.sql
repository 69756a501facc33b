-- +goose Up
-- PostgreSQL's readiness probe updates this row (see postgres/); SQLite has
-- no standby to wait for and keeps it only so both dialects share versions.
CREATE TABLE write_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
) STRICT;
INSERT INTO write_probe (id, probed_at) VALUES (1, 0);

-- +goose Down
DROP TABLE write_probe;
