-- +goose Up
CREATE TABLE idempotency_keys (
    key          TEXT    PRIMARY KEY,
    request_hash BLOB    NOT NULL,
    token_id     TEXT    NOT NULL REFERENCES sign_in_tokens (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL
) STRICT;

-- Retention prunes keys by age; deleting a token finds its keys by token_id.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_token_id_idx ON idempotency_keys (token_id);

-- +goose Down
DROP TABLE idempotency_keys;
