package postgres

import (
	"context"
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
