package storetest

import (
	"context"
	"sync"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
	"github.com/signin-tokens/signin-tokens/internal/webhook"
)

// RaceRelays starts n goroutines that each call relay again and again, all
// at once, until the returned stop is called; stop waits for them. A relay
// that fails ends its goroutine and the test.
func RaceRelays(t testing.TB, n int, relay func() error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := relay(); err != nil {
					t.Errorf("relay: %v", err)
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// RelayOnce relays one batch of up to limit events of s through enqueue,
// as the relay does: a peek, then the transaction that moves the cursor.
// It answers how many events it relayed.
func RelayOnce[TTx any](ctx context.Context, s webhook.Outbox[TTx], limit int, enqueue func(context.Context, TTx, []tokens.Event) error) (int, error) {
	after, events, err := s.PeekEvents(ctx, limit)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	moved, err := s.RelayEvents(ctx, after, events, func(ctx context.Context, tx TTx) error { return enqueue(ctx, tx, events) })
	if err != nil || !moved {
		return 0, err
	}
	return len(events), nil
}
