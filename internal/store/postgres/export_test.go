package postgres

import (
	"context"
	"strings"
	"sync"

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

// HoldWriterForTest makes the next writer that sends a group wait before
// sending it: waiting is closed once it waits, and resume lets it go on.
// Only one writer is held, once.
func HoldWriterForTest(s *Store) (waiting <-chan struct{}, resume func()) {
	w, r := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() {
		once.Do(func() {
			close(w)
			<-r
		})
	}
	s.group.beforeSend.Store(&hook)
	var resumed sync.Once
	return w, func() { resumed.Do(func() { close(r) }) }
}

// GroupRedeemPlanForTest is the generic plan a writer's connection makes
// for the grouped redemption, as it would cache it now.
func GroupRedeemPlanForTest(ctx context.Context, s *Store) (string, error) {
	conn, err := s.group.pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, "PREPARE group_redeem_plan AS "+redeemTokensSQL); err != nil {
		return "", err
	}
	rows, err := tx.Query(ctx, "EXPLAIN EXECUTE group_redeem_plan('{}', '{}', '{}', '{}', '{}', '{}', '{}')")
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}
