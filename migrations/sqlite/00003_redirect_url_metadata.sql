-- +goose Up
-- Where a token's link sends the person on to, and what its creator attached
-- (a JSON object as text).
ALTER TABLE sign_in_tokens ADD COLUMN redirect_url TEXT;
ALTER TABLE sign_in_tokens ADD COLUMN metadata TEXT;

-- +goose Down
ALTER TABLE sign_in_tokens DROP COLUMN metadata;
ALTER TABLE sign_in_tokens DROP COLUMN redirect_url;
