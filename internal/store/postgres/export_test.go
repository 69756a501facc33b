package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// MaxConnsForTest returns the size limit of the store's pool.
func MaxConnsForTest(s *Store) int32 { return s.pool.Config().MaxConns }

// QueuedForTest returns how many writes wait for a writer.
func QueuedForTest(s *Store) int { return len(s.group.queue) }

// QueryRowForTest runs a query on the store's pool.
func (s *Store) QueryRowForTest(ctx context.Context, sql string, args ...any) pgx.Row {
	return s.pool.QueryRow(ctx, sql, args...)
}
