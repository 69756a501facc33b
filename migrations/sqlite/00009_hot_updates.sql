-- +goose Up
-- The same indexes go as in PostgreSQL's 00009: a redemption or a revoke
-- changes status and updated_at, and each index on them is one more b-tree
-- entry to delete and insert per change. Listing by status filters the
-- created_at or user index; retention deletes every token RETENTION_PERIOD
-- after it expired, finished or not, by the expires_at index. SQLite has no
-- fillfactor.
DROP INDEX IF EXISTS sign_in_tokens_status_created_at_idx;
DROP INDEX IF EXISTS sign_in_tokens_finished_updated_at_idx;

-- +goose Down
CREATE INDEX sign_in_tokens_finished_updated_at_idx ON sign_in_tokens (updated_at) WHERE status <> 'pending';
CREATE INDEX sign_in_tokens_status_created_at_idx ON sign_in_tokens (status, created_at DESC, id DESC);
