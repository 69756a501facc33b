package storeerr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/store/storeerr"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

var (
	errNoRows = errors.New("no rows")
	errDown   = errors.New("connection refused")
	errOther  = errors.New("constraint violated")
)

// fakeDriver knows two errors of its own.
type fakeDriver struct{}

func (fakeDriver) NoRows(err error) bool      { return errors.Is(err, errNoRows) }
func (fakeDriver) Unreachable(err error) bool { return errors.Is(err, errDown) }

func TestTranslate(t *testing.T) {
	live := context.Background()
	expired, cancelExpired := context.WithTimeout(live, 0)
	defer cancelExpired()
	canceled, cancel := context.WithCancel(live)
	cancel()
	tests := []struct {
		name        string
		ctx         context.Context
		err         error
		unavailable bool // errors.Is(got, tokens.ErrUnavailable)
		canceled    bool // errors.Is(got, context.Canceled)
		notFound    bool
	}{
		{name: "no rows", ctx: live, err: errNoRows, notFound: true},
		{name: "no rows after the deadline", ctx: expired, err: errNoRows, notFound: true},
		{name: "deadline passed, driver says interrupted", ctx: expired, err: errOther, unavailable: true},
		{name: "deadline passed, driver says deadline", ctx: expired, err: fmt.Errorf("wrapped: %w", context.DeadlineExceeded), unavailable: true},
		{name: "a driver deadline of its own", ctx: live, err: context.DeadlineExceeded, unavailable: true},
		{name: "caller left, driver says interrupted", ctx: canceled, err: errOther, canceled: true},
		{name: "caller left, driver says connection lost", ctx: canceled, err: errDown, canceled: true},
		{name: "canceled inside the driver", ctx: live, err: context.Canceled, canceled: true},
		{name: "unreachable", ctx: live, err: errDown, unavailable: true},
		{name: "anything else", ctx: live, err: errOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := storeerr.Translate(tt.ctx, fakeDriver{}, "op", tt.err)
			if g := errors.Is(got, tokens.ErrUnavailable); g != tt.unavailable {
				t.Errorf("%v: is ErrUnavailable %v, want %v", got, g, tt.unavailable)
			}
			if g := errors.Is(got, context.Canceled); g != tt.canceled {
				t.Errorf("%v: is context.Canceled %v, want %v", got, g, tt.canceled)
			}
			if g := errors.Is(got, tokens.ErrNotFound); g != tt.notFound {
				t.Errorf("%v: is ErrNotFound %v, want %v", got, g, tt.notFound)
			}
			if !tt.notFound && !errors.Is(got, tt.err) && !tt.canceled {
				t.Errorf("%v: does not wrap %v", got, tt.err)
			}
		})
	}
	if err := storeerr.Translate(live, fakeDriver{}, "op", nil); err != nil {
		t.Errorf("nil: got %v, want nil", err)
	}
}
