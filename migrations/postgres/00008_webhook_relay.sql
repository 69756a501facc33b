-- +goose Up
-- The webhook relay's cursor: the position in the events log, in the
-- (xid, seq) order ListEvents pages by, up to which events have been
-- enqueued for delivery. The relay advances it in the transaction that
-- inserts the delivery jobs, so an event is enqueued exactly once. One row;
-- the relay locks it (FOR UPDATE SKIP LOCKED), so one replica relays at a
-- time. It starts at the end of the log as it stands now: events recorded
-- before this migration are never sent.
CREATE TABLE webhook_relay (
    id   integer PRIMARY KEY CHECK (id = 1),
    xid  bigint  NOT NULL,
    seq  bigint  NOT NULL
);
INSERT INTO webhook_relay (id, xid, seq)
SELECT 1, coalesce(max(xid), 0), coalesce(max(seq) FILTER (WHERE xid = (SELECT max(xid) FROM events)), 0)
FROM events;

-- +goose Down
DROP TABLE webhook_relay;
