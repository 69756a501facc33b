-- +goose Up
-- The audit trail: one row per change, inserted in the transaction of the
-- change. xid is that transaction's id and seq orders rows within it; a
-- reader returns only rows whose transaction is older than its snapshot's
-- xmin, in (xid, seq) order, so a cursor never skips a row that commits
-- later (see the store's ListEvents). token is the token as the change left
-- it, without its ticket hash: events outlive the tokens they record.
CREATE TABLE events (
    xid         bigint      NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    seq         bigserial   NOT NULL,
    type        text        NOT NULL,
    token_id    text        NOT NULL,
    user_id     text        NOT NULL,
    created_at  timestamptz NOT NULL,
    error_code  text,
    token       jsonb       NOT NULL,
    key_label   text        NOT NULL DEFAULT '',
    ip          text        NOT NULL DEFAULT '',
    user_agent  text        NOT NULL DEFAULT '',
    trace_id    text        NOT NULL DEFAULT '',
    PRIMARY KEY (xid, seq)
);
CREATE INDEX events_user_id_idx ON events (user_id, xid, seq);
-- Retention deletes by age.
CREATE INDEX events_created_at_idx ON events (created_at);

-- +goose Down
DROP TABLE events;
