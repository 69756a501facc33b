-- +goose Up
-- The audit trail: one row per change, inserted in the transaction of the
-- change. SQLite has one writer, which commits in seq order, so seq alone
-- orders and pages the log. token is the token as the change left it, as a
-- JSON object of its columns, without its ticket hash.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT    NOT NULL,
    token_id    TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    error_code  TEXT,
    token       TEXT    NOT NULL,
    key_label   TEXT    NOT NULL DEFAULT '',
    ip          TEXT    NOT NULL DEFAULT '',
    user_agent  TEXT    NOT NULL DEFAULT '',
    trace_id    TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX events_user_id_idx ON events (user_id, seq);
CREATE INDEX events_created_at_idx ON events (created_at);

-- +goose Down
DROP TABLE events;
