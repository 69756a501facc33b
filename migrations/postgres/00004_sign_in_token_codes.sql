-- +goose Up
-- One-time codes live beside their tokens, not in them: the token row, which
-- every create and redemption writes, stays as narrow as it was, and only
-- coded tokens have a row here.
CREATE TABLE sign_in_token_codes (
    token_id  text    PRIMARY KEY REFERENCES sign_in_tokens (id) ON DELETE CASCADE,
    code_hash bytea   NOT NULL, -- HMAC-SHA256 under the code secret key_id names
    key_id    text    NOT NULL,
    attempts  integer NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);

-- A redemption by code finds the user's tokens by the tokens' user index,
-- then their codes by this table's key.

-- +goose Down
DROP TABLE sign_in_token_codes;
