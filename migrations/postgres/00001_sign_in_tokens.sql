-- +goose Up
CREATE TABLE sign_in_tokens (
    id          text        PRIMARY KEY,
    user_id     text        NOT NULL,
    org_id      text,
    status      text        NOT NULL CHECK (status IN ('pending', 'accepted', 'revoked')),
    ticket_hash bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    revoked_at  timestamptz,
    -- The finishing timestamp is set exactly when the status says so.
    CHECK ((status = 'accepted') = (accepted_at IS NOT NULL)),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);

-- Listing newest first, unfiltered, by user and by status; id breaks ties.
CREATE INDEX sign_in_tokens_created_at_idx ON sign_in_tokens (created_at DESC, id DESC);
CREATE INDEX sign_in_tokens_user_id_created_at_idx ON sign_in_tokens (user_id, created_at DESC, id DESC);
CREATE INDEX sign_in_tokens_status_created_at_idx ON sign_in_tokens (status, created_at DESC, id DESC);

-- Retention: tokens past their expiry, and finished tokens by when they finished.
CREATE INDEX sign_in_tokens_expires_at_idx ON sign_in_tokens (expires_at);
CREATE INDEX sign_in_tokens_finished_updated_at_idx ON sign_in_tokens (updated_at) WHERE status <> 'pending';

-- +goose Down
DROP TABLE sign_in_tokens;
