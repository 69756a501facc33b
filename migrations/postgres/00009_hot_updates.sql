-- +goose NO TRANSACTION
-- +goose Up
-- Redemptions and revokes as HOT updates: no index may cover a column they
-- change (status, updated_at, accepted_at, revoked_at), partial-index
-- predicates included, or every redemption writes a new entry into every
-- index of the table. The two indexes that did:
--   - status, created_at: listing by status now filters the created_at or
--     user index scan (docs/benchmarks.md has the plans at 1M rows);
--   - updated_at WHERE status <> 'pending': retention now deletes every
--     token RETENTION_PERIOD after it expired, finished or not, by the
--     expires_at index (docs/operations.md, "Retention").
-- CONCURRENTLY: writes go on while each index is dropped; each statement
-- waits only for the transactions already using the table to end.
DROP INDEX CONCURRENTLY IF EXISTS sign_in_tokens_status_created_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS sign_in_tokens_finished_updated_at_idx;

-- Room in each heap page for the redemption's new row version, so it stays
-- on the page (a HOT update needs that too). Chosen by measurement
-- (docs/benchmarks.md). Only pages written from now on leave the room; pages
-- already full get it when VACUUM FULL or pg_repack rewrites the table, which
-- is optional: tokens are short-lived, so new pages soon hold most of them.
-- SHARE UPDATE EXCLUSIVE lock: reads and writes go on.
ALTER TABLE sign_in_tokens SET (fillfactor = 70);

-- +goose Down
ALTER TABLE sign_in_tokens RESET (fillfactor);
CREATE INDEX CONCURRENTLY IF NOT EXISTS sign_in_tokens_finished_updated_at_idx
    ON sign_in_tokens (updated_at) WHERE status <> 'pending';
CREATE INDEX CONCURRENTLY IF NOT EXISTS sign_in_tokens_status_created_at_idx
    ON sign_in_tokens (status, created_at DESC, id DESC);
