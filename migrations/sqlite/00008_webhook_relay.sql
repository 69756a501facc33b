-- +goose Up
-- The webhook relay's cursor: the seq up to which events have been enqueued
-- for delivery. The relay advances it in the transaction that inserts the
-- delivery jobs, so an event is enqueued exactly once. It starts at the end
-- of the log as it stands now: events recorded before this migration are
-- never sent.
CREATE TABLE webhook_relay (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL
) STRICT;
INSERT INTO webhook_relay (id, seq) SELECT 1, coalesce(max(seq), 0) FROM events;

-- +goose Down
DROP TABLE webhook_relay;
