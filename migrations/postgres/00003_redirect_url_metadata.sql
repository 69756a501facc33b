-- +goose Up
-- Where a token's link sends the person on to, and what its creator attached.
ALTER TABLE sign_in_tokens ADD COLUMN redirect_url text;
ALTER TABLE sign_in_tokens ADD COLUMN metadata jsonb;

-- +goose Down
ALTER TABLE sign_in_tokens DROP COLUMN metadata;
ALTER TABLE sign_in_tokens DROP COLUMN redirect_url;
