package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

func TestStoreErr(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	tests := []struct {
		name            string
		ctx             context.Context
		err             error
		wantNotFound    bool
		wantUnavailable bool
	}{
		{"no rows", live, pgx.ErrNoRows, true, false},
		{"wrapped no rows", live, fmt.Errorf("scan: %w", pgx.ErrNoRows), true, false},
		{"connection reset", live, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false, true},
		{"connection refused", live, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false, true},
		{"unexpected EOF", live, fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), false, true},
		{"conn closed", live, pgconn.ErrConnClosed, false, true},
		{"admin shutdown", live, &pgconn.PgError{Code: "57P01"}, false, true},
		{"cannot connect now", live, &pgconn.PgError{Code: "57P03"}, false, true},
		{"connection exception", live, &pgconn.PgError{Code: "08006"}, false, true},
		{"too many connections", live, &pgconn.PgError{Code: "53300"}, false, true},
		{"deadline (pool acquire or slow database)", live, context.DeadlineExceeded, false, true},
		{"unique violation", live, &pgconn.PgError{Code: "23505"}, false, false},
		{"caller canceled", canceled, context.Canceled, false, false},
		{"other", live, errors.New("boom"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := storeErr(tt.ctx, "op", tt.err)
			if g := errors.Is(got, tokens.ErrNotFound); g != tt.wantNotFound {
				t.Errorf("errors.Is(%v, ErrNotFound): got %v, want %v", got, g, tt.wantNotFound)
			}
			if g := errors.Is(got, tokens.ErrUnavailable); g != tt.wantUnavailable {
				t.Errorf("errors.Is(%v, ErrUnavailable): got %v, want %v", got, g, tt.wantUnavailable)
			}
			if !tt.wantNotFound && !errors.Is(got, tt.err) {
				t.Errorf("got %v, want it to wrap %v", got, tt.err)
			}
		})
	}
	if err := storeErr(live, "op", nil); err != nil {
		t.Errorf("storeErr(nil): got %v, want nil", err)
	}
}
