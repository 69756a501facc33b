package postgres

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestBroken: only a lost connection resets the pools.
func TestBroken(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"server shut down", &pgconn.PgError{Code: "57P01"}, true},
		{"server crashed", &pgconn.PgError{Code: "57P02"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"EOF", fmt.Errorf("read: %w", io.EOF), true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{"broken pipe", &net.OpError{Op: "write", Err: syscall.EPIPE}, true},
		{"read-only server", &pgconn.PgError{Code: "25006"}, true},
		{"statement canceled", &pgconn.PgError{Code: "57014"}, false},
		{"too many connections", &pgconn.PgError{Code: "53300"}, false},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, false},
		{"lock timeout", &pgconn.PgError{Code: "55P03"}, false},
		{"deadline", context.DeadlineExceeded, false},
		{"canceled", context.Canceled, false},
		{"dial refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false},
	}
	for _, tt := range tests {
		if got := broken(tt.err); got != tt.want {
			t.Errorf("%s: broken(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestRefused: only what the server rolled back, or never received, is run
// again alone; a FATAL error, a lost connection or a driver timeout may hide
// a commit, and is not.
func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"unique violation", &pgconn.PgError{Code: "23505", Severity: "ERROR"}, true},
		{"lock timeout", &pgconn.PgError{Code: "55P03", Severity: "ERROR"}, true},
		{"canceled statement", &pgconn.PgError{Code: "57014", Severity: "ERROR"}, true},
		{"deadlock", &pgconn.PgError{Code: "40P01", Severity: "ERROR"}, true},
		{"terminated after a commit", &pgconn.PgError{Code: "57P01", Severity: "FATAL", SeverityUnlocalized: "FATAL"}, false},
		{"panic", &pgconn.PgError{Code: "XX000", SeverityUnlocalized: "PANIC"}, false},
		{"context ended before sending", context.DeadlineExceeded, true},
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, false},
		{"EOF", io.ErrUnexpectedEOF, false},
	}
	for _, tt := range tests {
		if got := refused(tt.err); got != tt.want {
			t.Errorf("%s: refused(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
