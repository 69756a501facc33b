package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// SQLite compiles a statement in about the time it takes to run it, so the
// statements of creates and redemptions are compiled once, on the writer's
// connection, and write transactions run them as prepared there; any other
// statement is compiled as it comes.

// hotQueries are the statements every create and redemption runs.
var hotQueries = []string{insertTokenSQL, recordEventSQL, redeemSQL, revokeSQL}

// hotStatements holds hotQueries prepared on the writer's pool.
type hotStatements struct {
	mu    sync.Mutex
	ready atomic.Bool
	stmts map[string]*sql.Stmt // read without mu once ready
}

// prepare prepares hotQueries on db, unless done. It runs before a write
// transaction takes the writer's one connection, which preparing needs; it
// fails, to be tried again, while the tables are still to be migrated.
func (h *hotStatements) prepare(ctx context.Context, db *sql.DB) {
	if h.ready.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready.Load() {
		return
	}
	stmts := make(map[string]*sql.Stmt, len(hotQueries))
	for _, q := range hotQueries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			for _, st := range stmts {
				st.Close()
			}
			return // the transaction compiles its statements itself
		}
		stmts[q] = st
	}
	h.stmts = stmts
	h.ready.Store(true)
}

// lookup returns query prepared, or nil.
func (h *hotStatements) lookup(query string) *sql.Stmt {
	if !h.ready.Load() {
		return nil
	}
	return h.stmts[query]
}

// close closes the prepared statements.
func (h *hotStatements) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range h.stmts {
		st.Close()
	}
	h.stmts = nil
	h.ready.Store(false)
}

// writeTx is a write transaction that runs the hot statements prepared.
type writeTx struct {
	*sql.Tx
	hot *hotStatements
}

// begin starts a write transaction: BEGIN IMMEDIATE, on the writer's
// connection, the one writer from here on.
func (s *Store) begin(ctx context.Context) (writeTx, error) {
	s.hot.prepare(ctx, s.write)
	tx, err := s.write.BeginTx(ctx, nil)
	return writeTx{Tx: tx, hot: &s.hot}, err
}

func (tx writeTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := tx.hot.lookup(query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

func (tx writeTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := tx.hot.lookup(query); st != nil {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

func (tx writeTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := tx.hot.lookup(query); st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}
