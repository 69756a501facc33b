// Package storeerr is the one rule by which every store puts its driver's
// errors in the domain's terms, so that PostgreSQL and SQLite answer a slow
// database, a caller that left and a missing row alike.
package storeerr

import (
	"context"
	"errors"
	"fmt"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Driver says what a database driver's errors mean.
type Driver interface {
	// NoRows reports whether err says a query found no row.
	NoRows(err error) bool
	// Unreachable reports whether err says the database could not be used
	// at all: not reachable, the connection lost, too busy to take the
	// statement.
	Unreachable(err error) bool
}

// Translate puts err, which a store's operation op got from d, in the
// domain's terms:
//
//   - no row is tokens.ErrNotFound;
//   - a deadline that passed (the request's, or one of the driver's own) is
//     tokens.ErrUnavailable: the database was too slow, and the HTTP layer
//     answers 503 with Retry-After;
//   - a caller that left (ctx canceled) wraps context.Canceled, which is no
//     failure of ours and is not logged as one;
//   - a database that cannot be used is tokens.ErrUnavailable;
//   - anything else is wrapped with op, an internal error.
//
// The context is looked at before the error: when it ended, the driver may
// report that as an interrupted statement, a server-side cancel or a closed
// connection, and the context is the cause.
func Translate(ctx context.Context, d Driver, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case d.NoRows(err):
		return tokens.ErrNotFound
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s: %w: %v", op, context.Canceled, err)
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", op, tokens.ErrUnavailable, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", op, err)
	case d.Unreachable(err):
		return fmt.Errorf("%s: %w: %w", op, tokens.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
