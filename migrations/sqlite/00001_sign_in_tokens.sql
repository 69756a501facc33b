-- +goose Up
-- Timestamps are INTEGER milliseconds since the Unix epoch.
CREATE TABLE sign_in_tokens (
    id          TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    org_id      TEXT,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'accepted', 'revoked')),
    ticket_hash BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    accepted_at INTEGER,
    revoked_at  INTEGER,
    -- The finishing timestamp is set exactly when the status says so.
    CHECK ((status = 'accepted') = (accepted_at IS NOT NULL)),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
) STRICT;

-- Listing newest first, unfiltered, by user and by status; id breaks ties.
CREATE INDEX sign_in_tokens_created_at_idx ON sign_in_tokens (created_at DESC, id DESC);
CREATE INDEX sign_in_tokens_user_id_created_at_idx ON sign_in_tokens (user_id, created_at DESC, id DESC);
CREATE INDEX sign_in_tokens_status_created_at_idx ON sign_in_tokens (status, created_at DESC, id DESC);

-- Retention: tokens past their expiry, and finished tokens by when they finished.
CREATE INDEX sign_in_tokens_expires_at_idx ON sign_in_tokens (expires_at);
CREATE INDEX sign_in_tokens_finished_updated_at_idx ON sign_in_tokens (updated_at) WHERE status <> 'pending';

-- +goose Down
DROP TABLE sign_in_tokens;
