package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestLockedRowsHurtNobodyElse is the scenario of a locked row: two tokens'
// rows are held by another transaction while redemptions of them and of 58
// other tokens, and 40 creates, are sent at once in the same groups. Only
// the two locked redemptions may fail, each at its own deadline; every other
// write succeeds long before.
func TestLockedRowsHurtNobodyElse(t *testing.T) {
	t.Parallel()
	for _, held := range []bool{true, false} {
		t.Run(fmt.Sprintf("writer held=%v", held), func(t *testing.T) {
			t.Parallel()
			dbURL := pgtest.URL(t)
			writers := postgres.DefaultWriters
			if held {
				writers = 1 // and held, so that every write below shares a group
			}
			s := openWith(t, dbURL, postgres.Options{Writers: writers})
			ctx := context.Background()
			locked := []tokens.Token{pending("sit_locked_a"), pending("sit_locked_b")}
			for _, tok := range locked {
				tx := lockRow(t, dbURL, s, tok)
				defer tx.Rollback(ctx)
			}
			var others []tokens.Token
			for i := range 58 {
				tok := pending(fmt.Sprintf("sit_other_%02d", i))
				if err := createPlain(ctx, s, tok); err != nil {
					t.Fatal(err)
				}
				others = append(others, tok)
			}
			const timeout = 2 * time.Second
			var fns []func()
			var mu sync.Mutex
			var lockedErrs []error
			var otherErrs []error
			var slowest time.Duration
			timed := func(fn func(ctx context.Context) error, record func(error)) func() {
				return func() {
					ctx, cancel := context.WithTimeout(ctx, timeout)
					defer cancel()
					start := time.Now()
					err := fn(ctx)
					mu.Lock()
					defer mu.Unlock()
					record(err)
					if elapsed := time.Since(start); elapsed > timeout+1500*time.Millisecond {
						t.Errorf("a write took %v, past its deadline of %v", elapsed, timeout)
					}
				}
			}
			redeem := func(tok tokens.Token) func(ctx context.Context) error {
				return func(ctx context.Context) error {
					_, ch, err := s.Redeem(ctx, tok.ID, tok.TicketHash, groupNow, nil)
					if err == nil && ch != tokens.Changed {
						err = fmt.Errorf("redeem %s: %v", tok.ID, ch)
					}
					return err
				}
			}
			for _, tok := range locked {
				fns = append(fns, timed(redeem(tok), func(err error) { lockedErrs = append(lockedErrs, err) }))
			}
			recordOther := func(start time.Time) func(error) {
				return func(err error) {
					otherErrs = append(otherErrs, err)
					slowest = max(slowest, time.Since(start))
				}
			}
			start := time.Now()
			for _, tok := range others {
				fns = append(fns, timed(redeem(tok), recordOther(start)))
			}
			for i := range 40 {
				tok := pending(fmt.Sprintf("sit_created_%02d", i))
				fns = append(fns, timed(func(ctx context.Context) error { return createPlain(ctx, s, tok) }, recordOther(start)))
			}
			before := s.WriteStats()
			if held {
				queued(t, s, holder(t, s), fns...)
			} else {
				var wg sync.WaitGroup
				for _, fn := range fns {
					wg.Add(1)
					go func() { defer wg.Done(); fn() }()
				}
				wg.Wait()
			}
			failed := 0
			for _, err := range otherErrs {
				if err != nil {
					failed++
					t.Errorf("unrelated write: %v", err)
				}
			}
			t.Logf("unrelated writes failed: %d of %d; slowest %v; %+v", failed, len(otherErrs), slowest, s.WriteStats())
			if slowest > timeout/2 {
				t.Errorf("slowest unrelated write: %v, want well under the %v deadline", slowest, timeout)
			}
			for _, err := range lockedErrs {
				if !errors.Is(err, tokens.ErrUnavailable) {
					t.Errorf("redemption of a locked row: got %v, want ErrUnavailable", err)
				}
			}
			if held && s.WriteStats().Groups == before.Groups {
				t.Error("no group formed")
			}
		})
	}
}

// TestSlowGroupKeepsEachDeadline: a group whose INSERT waits for a table
// lock is cut short by the writers' lock_timeout; its creates then wait
// alone, each failing at its own deadline, and the one whose deadline
// outlasts the lock succeeds.
func TestSlowGroupKeepsEachDeadline(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	s := openWith(t, dbURL, postgres.Options{Writers: 1})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// SHARE blocks writes to the table, not reads.
	if _, err := tx.Exec(ctx, "LOCK TABLE sign_in_tokens IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	const unlockAfter = 1500 * time.Millisecond
	deadlines := []time.Duration{300 * time.Millisecond, 800 * time.Millisecond, 4 * time.Second}
	errs := make([]error, len(deadlines))
	took := make([]time.Duration, len(deadlines))
	var fns []func()
	for i, d := range deadlines {
		fns = append(fns, func() {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			start := time.Now()
			errs[i] = createPlain(ctx, s, pending(fmt.Sprintf("sit_slow_%d", i)))
			took[i] = time.Since(start)
		})
	}
	unlocked := make(chan struct{})
	time.AfterFunc(unlockAfter, func() {
		defer close(unlocked)
		tx.Rollback(ctx)
	})
	defer func() { <-unlocked }() // before the connection closes
	queued(t, s, holder(t, s), fns...)
	for i, d := range deadlines {
		t.Logf("deadline %v: took %v, %v", d, took[i], errs[i])
		if d < unlockAfter {
			if !errors.Is(errs[i], tokens.ErrUnavailable) {
				t.Errorf("create with deadline %v under the lock: got %v, want ErrUnavailable", d, errs[i])
			}
			if took[i] > d+time.Second {
				t.Errorf("create with deadline %v answered after %v", d, took[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("create with deadline %v, past the lock: got %v, want nil", d, errs[i])
		}
	}
	if retried := s.WriteStats().Retried; retried < int64(len(deadlines)) {
		t.Errorf("writes handed back: got %d, want at least %d", retried, len(deadlines))
	}
}

// TestTimeoutsKeepThePool: requests that time out one after another, their
// statements canceled on the server, leave the pool's connections in place.
func TestTimeoutsKeepThePool(t *testing.T) {
	t.Parallel()
	for _, writers := range []int{0, postgres.DefaultWriters} {
		t.Run(fmt.Sprintf("writers=%d", writers), func(t *testing.T) {
			t.Parallel()
			dbURL := pgtest.URL(t)
			s := openWith(t, dbURL, postgres.Options{Writers: writers})
			ctx := context.Background()
			tok := pending("sit_locked")
			tx := lockRow(t, dbURL, s, tok)
			defer tx.Rollback(ctx)
			// Warm the pool with a few connections.
			for range 3 {
				if _, err := s.Get(ctx, tok.ID); err != nil {
					t.Fatal(err)
				}
			}
			before := s.Stat().NewConnsCount()
			for i := range 8 {
				short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
				_, _, err := s.Redeem(short, tok.ID, tok.TicketHash, groupNow, nil)
				cancel()
				if !errors.Is(err, tokens.ErrUnavailable) {
					t.Fatalf("timeout %d: got %v, want ErrUnavailable", i, err)
				}
				if _, err := s.Get(ctx, tok.ID); err != nil {
					t.Fatalf("Get after timeout %d: %v", i, err)
				}
			}
			if opened := s.Stat().NewConnsCount() - before; opened > 1 {
				t.Errorf("connections opened during 8 timeouts: got %d, want at most 1", opened)
			}
		})
	}
}

// TestGroupedKeysShareTheGroup: keyed redemptions sent as one group record
// their keys in the group's transaction; retries replay; two redemptions
// under one key in one group refuse the group, and, run alone, one wins and
// the other is a mismatch.
func TestGroupedKeysShareTheGroup(t *testing.T) {
	t.Parallel()
	s, hold := groupSetup(t)
	ctx := context.Background()
	var toks []tokens.Token
	for i := range 10 {
		tok := pending(fmt.Sprintf("sit_keyed_%d", i))
		if err := createPlain(ctx, s, tok); err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	key := func(i int) *tokens.Idempotency {
		return &tokens.Idempotency{Key: fmt.Sprintf("key-%d", i), RequestHash: []byte(toks[i].ID), NotBefore: groupNow.Add(-time.Hour)}
	}
	chs := make([]tokens.Change, len(toks))
	errs := make([]error, len(toks))
	var fns []func()
	for i := range 8 {
		fns = append(fns, func() { _, chs[i], errs[i] = s.Redeem(ctx, toks[i].ID, toks[i].TicketHash, groupNow, key(i)) })
	}
	before := s.WriteStats()
	queued(t, s, hold, fns...)
	after := s.WriteStats()
	if after.Groups-before.Groups != 1 || after.Retried != before.Retried {
		t.Errorf("write stats: before %+v, after %+v; want one group, nothing retried", before, after)
	}
	for i := range 8 {
		if errs[i] != nil || chs[i] != tokens.Changed {
			t.Errorf("keyed redeem %d in a group: got %v, %v; want Changed, nil", i, chs[i], errs[i])
		}
		got, ch, err := s.Redeem(ctx, toks[i].ID, toks[i].TicketHash, groupNow.Add(time.Minute), key(i))
		if err != nil || ch != tokens.Replayed || !got.UpdatedAt.Equal(groupNow) {
			t.Errorf("retry of keyed redeem %d: got %v, %v, updated %v; want Replayed at %v", i, ch, err, got.UpdatedAt, groupNow)
		}
	}

	// Tokens 8 and 9 under one key, in one group.
	shared := key(8)
	fns = fns[:0]
	for i := 8; i < 10; i++ {
		fns = append(fns, func() {
			k := *shared
			k.RequestHash = []byte(toks[i].ID)
			_, chs[i], errs[i] = s.Redeem(ctx, toks[i].ID, toks[i].TicketHash, groupNow, &k)
		})
	}
	queued(t, s, hold, fns...)
	won, mismatched := 0, 0
	for i := 8; i < 10; i++ {
		switch {
		case errs[i] == nil && chs[i] == tokens.Changed:
			won++
		case errors.Is(errs[i], tokens.ErrIdempotencyMismatch):
			mismatched++
			if got, _ := s.Get(ctx, toks[i].ID); got.Status != tokens.StatusPending {
				t.Errorf("token refused for its key: status %s, want pending", got.Status)
			}
		default:
			t.Errorf("redeem %d under a shared key: got %v, %v", i, chs[i], errs[i])
		}
	}
	if won != 1 || mismatched != 1 {
		t.Errorf("one key, two tokens: %d changed and %d mismatched, want 1 and 1", won, mismatched)
	}
}

// TestCreateFindsItsOwnRow: a create run again after its first attempt
// committed (a group that could not tell whether it did hands its writes
// back) answers as done; another token under the same id is still refused.
func TestCreateFindsItsOwnRow(t *testing.T) {
	t.Parallel()
	s := openWith(t, pgtest.URL(t), postgres.Options{})
	ctx := context.Background()
	tok := pending("sit_twice")
	for i := range 2 {
		if err := createPlain(ctx, s, tok); err != nil {
			t.Fatalf("create #%d: %v", i+1, err)
		}
	}
	other := tok
	other.UserID, other.TicketHash = "someone_else", tokens.HashTicket("another ticket")
	if err := createPlain(ctx, s, other); err == nil {
		t.Error("create of another token under a stored id: got nil, want an error")
	}
	if got, _ := s.Get(ctx, tok.ID); got.UserID != tok.UserID {
		t.Errorf("stored token: user %q, want %q", got.UserID, tok.UserID)
	}
}
