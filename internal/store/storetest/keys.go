package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// change is a Redeem or a Revoke of one token, as the contract tests call
// them: the same table of cases runs against both.
type change struct {
	name string
	// call changes tok at the given time, under key (nil for none).
	call func(s tokens.Store, ctx context.Context, tok tokens.Token, at time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error)
	// finished is tok as the change leaves it at the given time.
	finished func(tok tokens.Token, at time.Time) tokens.Token
}

var changes = []change{
	{"Redeem",
		func(s tokens.Store, ctx context.Context, tok tokens.Token, at time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
			return s.Redeem(ctx, tok.ID, tok.TicketHash, at, key)
		}, accepted},
	{"Revoke",
		func(s tokens.Store, ctx context.Context, tok tokens.Token, at time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
			return s.Revoke(ctx, tok.ID, at, key)
		}, revoked},
}

func keyAt(key, request string, at time.Time) *tokens.Idempotency {
	return &tokens.Idempotency{Key: key, RequestHash: []byte(request), NotBefore: at.Add(-tokens.IdempotencyWindow)}
}

// testIdempotentChange: a change made under a key is answered again, as it
// left the token, to a retry with the same key and request; the key is
// recorded only with a change that succeeded.
func testIdempotentChange(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			prefix := "sit_keyed_" + c.name
			tok := token(prefix+"_1", "user_1", now.Add(-time.Minute))
			create(t, s, tok)
			key := keyAt(prefix+"-key", "request "+tok.ID, now)
			want := c.finished(tok, now)

			got, ch, err := c.call(s, ctx, tok, now, key)
			if err != nil || ch != tokens.Changed {
				t.Fatalf("first call: got %v, %v; want Changed, nil", ch, err)
			}
			assertToken(t, "first call returns", got, want)

			// A retry later, as after a lost answer: the same token, as the
			// first call left it, updated_at included.
			later := now.Add(time.Minute)
			got, ch, err = c.call(s, ctx, tok, later, keyAt(key.Key, "request "+tok.ID, later))
			if err != nil || ch != tokens.Replayed {
				t.Fatalf("retry: got %v, %v; want Replayed, nil", ch, err)
			}
			assertToken(t, "retry returns", got, want)
			assertToken(t, "stored after retry", get(t, s, tok.ID), want)

			// The key with another request: refused, and nothing changes.
			other := token(prefix+"_2", "user_1", now.Add(-time.Minute))
			create(t, s, other)
			if _, _, err := c.call(s, ctx, other, later, keyAt(key.Key, "request "+other.ID, later)); !errors.Is(err, tokens.ErrIdempotencyMismatch) {
				t.Errorf("key reused for another token: got %v, want %v", err, tokens.ErrIdempotencyMismatch)
			}
			assertToken(t, "other token after a reused key", get(t, s, other.ID), other)

			// Without a key, a second change is refused as before.
			if _, ch, err := c.call(s, ctx, tok, later, nil); err != nil || ch != tokens.Unchanged {
				t.Errorf("second call without a key: got %v, %v; want Unchanged, nil", ch, err)
			}

			// A call that failed records nothing: the key stays free.
			failKey := keyAt(prefix+"-fail", "request "+tok.ID, later)
			if _, ch, err := c.call(s, ctx, tok, later, failKey); err != nil || ch != tokens.Unchanged {
				t.Fatalf("change of a finished token: got %v, %v; want Unchanged, nil", ch, err)
			}
			fresh := token(prefix+"_3", "user_1", now.Add(-time.Minute))
			create(t, s, fresh)
			if _, ch, err := c.call(s, ctx, fresh, later, keyAt(failKey.Key, "request "+fresh.ID, later)); err != nil || ch != tokens.Changed {
				t.Errorf("key whose first use failed, used again: got %v, %v; want Changed, nil", ch, err)
			}

			// A key older than the window is free again.
			expiring := token(prefix+"_4", "user_1", now.Add(-48*time.Hour))
			expiring.ExpiresAt = now.Add(time.Hour)
			create(t, s, expiring)
			oldKey := keyAt(prefix+"-old", "request "+expiring.ID, now.Add(-30*time.Hour))
			if _, ch, err := c.call(s, ctx, expiring, now.Add(-30*time.Hour), oldKey); err != nil || ch != tokens.Changed {
				t.Fatalf("old use of a key: got %v, %v; want Changed, nil", ch, err)
			}
			reused := token(prefix+"_5", "user_1", now.Add(-time.Minute))
			create(t, s, reused)
			got, ch, err = c.call(s, ctx, reused, now, keyAt(oldKey.Key, "request "+reused.ID, now))
			if err != nil || ch != tokens.Changed {
				t.Errorf("key past its window, used for another request: got %v, %v; want Changed, nil", ch, err)
			}
			assertToken(t, "change under a key taken over", got, c.finished(reused, now))
		})
	}
	t.Run("one key across verbs", func(t *testing.T) {
		tok := token("sit_keyed_verbs", "user_1", now.Add(-time.Minute))
		create(t, s, tok)
		if _, ch, err := s.Revoke(ctx, tok.ID, now, keyAt("verbs-key", "revoke "+tok.ID, now)); err != nil || ch != tokens.Changed {
			t.Fatalf("Revoke: got %v, %v; want Changed, nil", ch, err)
		}
		other := token("sit_keyed_verbs_2", "user_1", now.Add(-time.Minute))
		create(t, s, other)
		_, _, err := s.Redeem(ctx, other.ID, other.TicketHash, now, keyAt("verbs-key", "redeem "+other.ID, now))
		if !errors.Is(err, tokens.ErrIdempotencyMismatch) {
			t.Errorf("Redeem under a key a Revoke used: got %v, want %v", err, tokens.ErrIdempotencyMismatch)
		}
		assertToken(t, "token redeemed under a reused key", get(t, s, other.ID), other)
	})
}

// testConcurrentKeyedRedeem: retries of one keyed redemption sent at once
// accept the token once; every one of them answers it accepted.
func testConcurrentKeyedRedeem(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	tok := token("sit_keyed_race", "user_1", now.Add(-time.Minute))
	create(t, s, tok)
	const n = 16
	got := make([]tokens.Token, n)
	chs := make([]tokens.Change, n)
	errs := make([]error, n)
	race(n, func(i int) {
		got[i], chs[i], errs[i] = s.Redeem(ctx, tok.ID, tok.TicketHash, now, keyAt("race-key", "the request", now))
	})
	changed := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Redeem #%d: %v", i, errs[i])
			continue
		}
		switch chs[i] {
		case tokens.Changed:
			changed++
		case tokens.Unchanged:
			t.Errorf("Redeem #%d: got Unchanged, want Changed or Replayed", i)
		}
		assertToken(t, fmt.Sprintf("Redeem #%d returns", i), got[i], accepted(tok, now))
	}
	if changed != 1 {
		t.Errorf("Changed: got %d, want 1", changed)
	}
}
