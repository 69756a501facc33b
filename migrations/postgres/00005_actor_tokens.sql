-- +goose Up
-- Actor tokens live in the same table as sign-in tokens: one concept with
-- two kinds, told apart by the id's prefix (sit_, act_). Only actor tokens
-- fill these columns.
ALTER TABLE sign_in_tokens ADD COLUMN actor jsonb;
ALTER TABLE sign_in_tokens ADD COLUMN session_max_duration_seconds integer
    CHECK (session_max_duration_seconds > 0);

-- Listing actor tokens, a small minority of rows, newest first, all and by
-- user: partial indexes, so they cost sign-in tokens nothing.
CREATE INDEX sign_in_tokens_actor_created_at_idx ON sign_in_tokens (created_at DESC, id DESC)
    WHERE substr(id, 1, 4) = 'act_';
CREATE INDEX sign_in_tokens_actor_user_id_created_at_idx ON sign_in_tokens (user_id, created_at DESC, id DESC)
    WHERE substr(id, 1, 4) = 'act_';

-- +goose Down
DROP INDEX sign_in_tokens_actor_user_id_created_at_idx;
DROP INDEX sign_in_tokens_actor_created_at_idx;
ALTER TABLE sign_in_tokens DROP COLUMN session_max_duration_seconds;
ALTER TABLE sign_in_tokens DROP COLUMN actor;
