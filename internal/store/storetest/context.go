package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// testContextEnded: every method answers a deadline that passed with
// ErrUnavailable and a caller that left with context.Canceled, and changes
// nothing.
func testContextEnded(t *testing.T, s tokens.Store) {
	tok := token("sit_ctx", "user_1", now.Add(-time.Minute))
	create(t, s, tok)
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	key := keyAt("ctx-key", "request", now)
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Create", func(ctx context.Context) error { return createPlain(ctx, s, token("sit_ctx_new", "user_1", now)) }},
		{"Create with a key", func(ctx context.Context) error {
			_, _, err := createKeyed(ctx, s, token("sit_ctx_new", "user_1", now), *key)
			return err
		}},
		{"Create with a code, revoking the user's others", func(ctx context.Context) error {
			_, err := s.Create(ctx, tokens.Creation{Token: token("sit_ctx_new", "user_1", now),
				Code: &tokens.StoredCode{Hash: []byte("h"), KeyID: "k"}, RevokePrevious: true})
			return err
		}},
		{"RevokeUser", func(ctx context.Context) error {
			_, err := s.RevokeUser(ctx, tokens.KindSignIn, "user_1", now)
			return err
		}},
		{"RedeemCode", func(ctx context.Context) error {
			_, _, err := s.RedeemCode(ctx, tokens.CodeRedemption{UserID: "user_1", Now: now, MaxAttempts: 5,
				Matches: func(string, tokens.StoredCode) bool { return false }})
			return err
		}},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, tok.ID); return err }},
		{"List", func(ctx context.Context) error { _, _, err := s.List(ctx, tokens.ListFilter{Limit: 1}); return err }},
		{"Redeem", func(ctx context.Context) error {
			_, _, err := s.Redeem(ctx, tok.ID, tok.TicketHash, now, nil)
			return err
		}},
		{"Redeem with a key", func(ctx context.Context) error {
			_, _, err := s.Redeem(ctx, tok.ID, tok.TicketHash, now, key)
			return err
		}},
		{"Revoke", func(ctx context.Context) error { _, _, err := s.Revoke(ctx, tok.ID, now, nil); return err }},
		{"Revoke with a key", func(ctx context.Context) error { _, _, err := s.Revoke(ctx, tok.ID, now, key); return err }},
		{"DeleteFinished", func(ctx context.Context) error { _, err := s.DeleteFinished(ctx, now.Add(time.Hour), 10); return err }},
		{"DeleteIdempotencyKeys", func(ctx context.Context) error {
			_, err := s.DeleteIdempotencyKeys(ctx, now, 10)
			return err
		}},
		{"AppendEvent", func(ctx context.Context) error {
			return s.AppendEvent(ctx, tokens.Event{Type: "sign_in_token.redeem_refused", CreatedAt: now, Token: tok, ErrorCode: "x"})
		}},
		{"ListEvents", func(ctx context.Context) error {
			_, _, err := s.ListEvents(ctx, tokens.EventFilter{Limit: 1})
			return err
		}},
		{"DeleteEvents", func(ctx context.Context) error { _, err := s.DeleteEvents(ctx, now.Add(time.Hour), 10); return err }},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(expired); !errors.Is(err, tokens.ErrUnavailable) || errors.Is(err, context.Canceled) {
				t.Errorf("deadline passed: got %v, want ErrUnavailable", err)
			}
			if err := c.call(canceled); !errors.Is(err, context.Canceled) || errors.Is(err, tokens.ErrUnavailable) {
				t.Errorf("caller left: got %v, want context.Canceled", err)
			}
		})
	}
	assertToken(t, "token after ended contexts", get(t, s, tok.ID), tok)
	// Only the create above recorded anything.
	waitEvents(t, s, 1)
	if list, _, err := s.ListEvents(context.Background(), tokens.EventFilter{Limit: 10}); err != nil || len(list) != 1 {
		t.Errorf("events after ended contexts: got %d, %v; want only the create's", len(list), err)
	}
	if _, err := s.Get(context.Background(), "sit_ctx_new"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("token created under an ended context: got %v, want ErrNotFound", err)
	}
}
