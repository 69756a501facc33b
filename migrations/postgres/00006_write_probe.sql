-- +goose Up
-- One row that readiness updates, at most once a second per replica: a
-- primary that takes no writes (read-only, or waiting for a synchronous
-- standby that does not answer) fails the probe although it answers reads.
CREATE TABLE write_probe (
    id        boolean     PRIMARY KEY DEFAULT true CHECK (id),
    probed_at timestamptz NOT NULL
);
INSERT INTO write_probe (probed_at) VALUES (now());

-- +goose Down
DROP TABLE write_probe;
