package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestReplicasRedeemOnce: three stores with writers, as three replicas, on
// one schema; each of 100 tokens is redeemed six times at once, twice
// through each, for 20 rounds. Each must be accepted exactly once, and every
// other attempt must find it accepted, with no error: groups from different
// replicas lock rows in different orders, and a deadlock must cost only a
// retry. (Before update retried its deadlock victims, about one run in three
// under -race had a redemption fail with 40P01.)
func TestReplicasRedeemOnce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	var stores []*postgres.Store
	for range 3 {
		stores = append(stores, openWith(t, dbURL, postgres.Options{Writers: 2}))
	}
	ctx := context.Background()
	for round := range 20 {
		var toks []string
		for i := range 100 {
			tok := pending(fmt.Sprintf("sit_r%d_%d", round, i))
			if err := createPlain(ctx, stores[0], tok); err != nil {
				t.Fatal(err)
			}
			toks = append(toks, tok.ID)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := map[string]int{}
		for i, id := range toks {
			for k := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := stores[(i+k)%3]
					got, change, err := s.Redeem(ctx, id, pending(id).TicketHash, groupNow, nil)
					ok := change == tokens.Changed
					if err != nil {
						t.Errorf("redeem %s: %v", id, err)
						return
					}
					if !ok && got.Status != tokens.StatusAccepted {
						t.Errorf("redeem %s: not matched, and the token is %q, want accepted", id, got.Status)
					}
					if ok {
						mu.Lock()
						wins[id]++
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		for _, id := range toks {
			if wins[id] != 1 {
				t.Errorf("%s: accepted %d times, want 1", id, wins[id])
			}
		}
		if t.Failed() {
			return
		}
	}
}

// TestReplicasKeepTheCodeCap: 60 wrong codes for one user, sent at once
// through three stores as three replicas, are counted at most
// CodeMaxAttempts times per token in the database, and the right code is
// refused afterwards.
func TestReplicasKeepTheCodeCap(t *testing.T) {
	t.Parallel()
	// Small pools: the guesses queue for connections, as they would on a
	// busy replica, and the tests running beside this one keep theirs.
	dbURL := pgtest.WithParam(t, pgtest.URL(t), "pool_max_conns", "4")
	var stores []*postgres.Store
	for range 3 {
		stores = append(stores, openWith(t, dbURL, postgres.Options{Writers: 2}))
	}
	ctx := context.Background()
	codes, err := tokens.NewCodes([]byte("a code secret of at least 32 bytes, for tests"))
	if err != nil {
		t.Fatal(err)
	}
	tok := pending("sit_capped")
	code, stored := codes.New(tok.ID, 6)
	if _, err := stores[0].Create(ctx, tokens.Creation{Token: tok, Code: &stored}); err != nil {
		t.Fatal(err)
	}
	const max = tokens.DefaultCodeMaxAttempts
	var compared sync.Map // guess → compared
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wrong := fmt.Sprintf("%06d", (i*7919+1)%1000000)
			if wrong == code {
				return
			}
			<-start
			_, _, err := stores[i%3].RedeemCode(ctx, tokens.CodeRedemption{UserID: tok.UserID, Now: groupNow, MaxAttempts: max,
				Matches: func(id string, sc tokens.StoredCode) bool {
					compared.Store(wrong, true)
					return codes.Matches(id, wrong, sc)
				}})
			if err != nil {
				t.Errorf("guess %d: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	n := 0
	compared.Range(func(any, any) bool { n++; return true })
	var attempts int
	if err := stores[1].QueryRowForTest(ctx, `SELECT attempts FROM sign_in_token_codes WHERE token_id = $1`, tok.ID).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != max || n != max {
		t.Errorf("after 60 wrong codes through 3 replicas: %d attempts counted and %d codes compared, want %d and %d", attempts, n, max, max)
	}
	_, outcome, err := stores[2].RedeemCode(ctx, tokens.CodeRedemption{UserID: tok.UserID, Now: groupNow, MaxAttempts: max,
		Matches: func(id string, sc tokens.StoredCode) bool { return codes.Matches(id, code, sc) }})
	if err != nil || outcome != tokens.CodeNoneLeft {
		t.Errorf("the right code after the cap: got %v, %v; want CodeNoneLeft", outcome, err)
	}
}
