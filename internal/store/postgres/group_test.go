package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

var groupNow = time.Date(2025, 11, 28, 8, 0, 0, 0, time.UTC)

func pending(id string) tokens.Token {
	return tokens.Token{ID: id, UserID: "user_" + id, Status: tokens.StatusPending,
		TicketHash: tokens.HashTicket("ticket " + id),
		CreatedAt:  groupNow, UpdatedAt: groupNow, ExpiresAt: groupNow.Add(time.Hour)}
}

// groupSetup returns a store with a single writer, so that writes queue
// behind a busy writer and go out together, and a hold function that keeps
// that writer busy until the returned release is called.
func groupSetup(t *testing.T) (s *postgres.Store, hold func() (release func())) {
	t.Helper()
	s = openWith(t, pgtest.URL(t), postgres.Options{Writers: 1})
	return s, holder(t, s)
}

// holder returns a hold function for s, a store with a single writer: hold
// keeps the writer busy with a create of its own until the returned release
// is called.
func holder(t *testing.T, s *postgres.Store) (hold func() (release func())) {
	return func() func() {
		t.Helper()
		waiting, resume := postgres.HoldWriterForTest(s)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := createPlain(context.Background(), s, pending(fmt.Sprintf("sit_blocker_%d", time.Now().UnixNano()))); err != nil {
				t.Errorf("blocker Create: %v", err)
			}
		}()
		<-waiting
		var once sync.Once
		release := func() {
			once.Do(func() {
				resume()
				<-done
			})
		}
		t.Cleanup(release) // before the store closes, should the test stop early
		return release
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// queued runs each of fns on its own goroutine while the writer is held,
// releases the writer once all of them are queued, and waits for them.
func queued(t *testing.T, s *postgres.Store, hold func() func(), fns ...func()) {
	t.Helper()
	release := hold()
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	waitFor(t, "the writes to queue", func() bool { return postgres.QueuedForTest(s) == len(fns) })
	release()
	wg.Wait()
}

// TestGroupedWrites sends creates and redemptions, good and bad, as one
// group, and checks each caller gets the answer it would get alone.
func TestGroupedWrites(t *testing.T) {
	t.Parallel()
	s, hold := groupSetup(t)
	ctx := context.Background()
	var toRedeem []tokens.Token
	for i := range 8 {
		tok := pending(fmt.Sprintf("sit_redeem_%d", i))
		if err := createPlain(ctx, s, tok); err != nil {
			t.Fatal(err)
		}
		toRedeem = append(toRedeem, tok)
	}
	twice, wrongHash := toRedeem[0], toRedeem[1]
	expired := pending("sit_expired")
	expired.ExpiresAt = groupNow.Add(-time.Second)
	if err := createPlain(ctx, s, expired); err != nil {
		t.Fatal(err)
	}

	type outcome struct {
		tok tokens.Token
		ok  bool // changed
		err error
	}
	var mu sync.Mutex
	outcomes := map[string][]outcome{}
	redeem := func(key string, tok tokens.Token, hash []byte) func() {
		return func() {
			got, change, err := s.Redeem(ctx, tok.ID, hash, groupNow, nil)
			mu.Lock()
			outcomes[key] = append(outcomes[key], outcome{got, change == tokens.Changed, err})
			mu.Unlock()
		}
	}
	var fns []func()
	for _, tok := range toRedeem[2:] {
		fns = append(fns, redeem(tok.ID, tok, tok.TicketHash))
	}
	for range 3 {
		fns = append(fns, redeem("twice", twice, twice.TicketHash))
	}
	fns = append(fns,
		redeem("wrong hash", wrongHash, tokens.HashTicket("forged")),
		redeem("unknown", pending("sit_unknown"), pending("sit_unknown").TicketHash),
		redeem("expired", expired, expired.TicketHash))
	var created []tokens.Token
	createErrs := make([]error, 10)
	for i := range createErrs {
		tok := pending(fmt.Sprintf("sit_new_%d", i))
		created = append(created, tok)
		fns = append(fns, func() { createErrs[i] = createPlain(ctx, s, tok) })
	}
	before := s.WriteStats()
	queued(t, s, hold, fns...)
	after := s.WriteStats()

	if groups, grouped := after.Groups-before.Groups, after.Grouped-before.Grouped; groups != 1 || grouped != int64(len(fns)) {
		t.Errorf("groups: got %d carrying %d writes, want 1 carrying %d", groups, grouped, len(fns))
	}
	for _, tok := range toRedeem[2:] {
		o := outcomes[tok.ID][0]
		if o.err != nil || !o.ok || o.tok.Status != tokens.StatusAccepted || !o.tok.AcceptedAt.Equal(groupNow) {
			t.Errorf("redeem %s: got %s %v %v, want accepted at %v", tok.ID, o.tok.Status, o.ok, o.err, groupNow)
		}
	}
	wins := 0
	for _, o := range outcomes["twice"] {
		if o.err != nil {
			t.Errorf("redeem twice: %v", o.err)
		}
		if o.ok {
			wins++
		}
		if o.tok.Status != tokens.StatusAccepted {
			t.Errorf("redeem twice: got status %s, want accepted", o.tok.Status)
		}
	}
	if wins != 1 {
		t.Errorf("one token redeemed 3 times in one group: got %d successes, want 1", wins)
	}
	for key, want := range map[string]tokens.Status{"wrong hash": tokens.StatusPending, "expired": tokens.StatusPending} {
		o := outcomes[key][0]
		if o.err != nil || o.ok || o.tok.Status != want {
			t.Errorf("redeem %s: got %s %v %v, want %s false nil", key, o.tok.Status, o.ok, o.err, want)
		}
	}
	if o := outcomes["unknown"][0]; !errors.Is(o.err, tokens.ErrNotFound) {
		t.Errorf("redeem unknown: got %v, want ErrNotFound", o.err)
	}
	for i, tok := range created {
		if createErrs[i] != nil {
			t.Errorf("create %s: %v", tok.ID, createErrs[i])
			continue
		}
		got, err := s.Get(ctx, tok.ID)
		if err != nil || got.UserID != tok.UserID || got.Status != tokens.StatusPending || !got.ExpiresAt.Equal(tok.ExpiresAt) {
			t.Errorf("created %s: got %+v, %v", tok.ID, got, err)
		}
	}
	if got, _ := s.Get(ctx, wrongHash.ID); got.Status != tokens.StatusPending {
		t.Errorf("token redeemed with a forged hash: got %s, want pending", got.Status)
	}
}

// TestGroupRefused puts a create of an id already stored in a group: the
// server refuses the whole transaction, each write runs again alone, and
// only the offending one fails.
func TestGroupRefused(t *testing.T) {
	t.Parallel()
	s, hold := groupSetup(t)
	ctx := context.Background()
	taken := pending("sit_taken")
	if err := createPlain(ctx, s, taken); err != nil {
		t.Fatal(err)
	}
	redeemed := pending("sit_to_redeem")
	if err := createPlain(ctx, s, redeemed); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 6)
	var redeemOK tokens.Change
	var redeemErr error
	fns := []func(){
		func() {
			again := pending(taken.ID)
			again.UserID = "someone_else"
			errs[0] = createPlain(ctx, s, again)
		},
		func() { _, redeemOK, redeemErr = s.Redeem(ctx, redeemed.ID, redeemed.TicketHash, groupNow, nil) },
	}
	for i := 1; i < len(errs); i++ {
		fns = append(fns, func() { errs[i] = createPlain(ctx, s, pending(fmt.Sprintf("sit_fresh_%d", i))) })
	}
	before := s.WriteStats()
	queued(t, s, hold, fns...)
	if retried := s.WriteStats().Retried - before.Retried; retried != int64(len(fns)) {
		t.Errorf("writes run again alone: got %d, want %d", retried, len(fns))
	}
	if errs[0] == nil {
		t.Error("create of an id already stored: got nil, want an error")
	}
	if got, _ := s.Get(ctx, taken.ID); got.UserID != taken.UserID {
		t.Errorf("stored token changed: user %q, want %q", got.UserID, taken.UserID)
	}
	for i := 1; i < len(errs); i++ {
		if errs[i] != nil {
			t.Errorf("create sit_fresh_%d: got %v, want nil", i, errs[i])
		}
	}
	if redeemErr != nil || redeemOK != tokens.Changed {
		t.Errorf("redeem in the refused group: got %v, %v; want Changed, nil", redeemOK, redeemErr)
	}
}

// TestGroupCallerGone: a write whose caller gave up while it was queued is
// dropped from its group, and the others go ahead.
func TestGroupCallerGone(t *testing.T) {
	t.Parallel()
	s, hold := groupSetup(t)
	ctx := context.Background()
	var goneErr, keptErr error
	gone, kept := pending("sit_gone"), pending("sit_kept")
	release := hold()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); goneErr = createPlain(short, s, gone) }()
	go func() { defer wg.Done(); keptErr = createPlain(ctx, s, kept) }()
	waitFor(t, "the writes to queue", func() bool { return postgres.QueuedForTest(s) == 2 })
	<-short.Done()
	release()
	wg.Wait()
	if !errors.Is(goneErr, tokens.ErrUnavailable) {
		t.Errorf("create whose deadline passed in the queue: got %v, want ErrUnavailable", goneErr)
	}
	if _, err := s.Get(ctx, gone.ID); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("token of the dropped create: got %v, want ErrNotFound", err)
	}
	if keptErr != nil {
		t.Errorf("create queued beside it: %v", keptErr)
	}
}

// TestCloseFinishesQueuedWrites: Close lets queued writes finish, and a
// write after Close is refused as unavailable.
func TestCloseFinishesQueuedWrites(t *testing.T) {
	t.Parallel()
	s, hold := groupSetup(t)
	ctx := context.Background()
	release := hold()
	errs := make([]error, 5)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = createPlain(ctx, s, pending(fmt.Sprintf("sit_late_%d", i))) }()
	}
	waitFor(t, "the writes to queue", func() bool { return postgres.QueuedForTest(s) == len(errs) })
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	release()
	wg.Wait()
	<-closed
	for i, err := range errs {
		if err != nil {
			t.Errorf("queued create %d: got %v, want nil", i, err)
		}
	}
	if err := createPlain(ctx, s, pending("sit_after_close")); !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("create after Close: got %v, want ErrUnavailable", err)
	}
}

// TestGroupRedeemPlanOnANewTable: on a table that was never analyzed and
// looks empty, the grouped redemption's generic plan (which a connection
// caches for good) still finds each row by primary key, never by reading
// the whole table.
func TestGroupRedeemPlanOnANewTable(t *testing.T) {
	t.Parallel()
	s := openWith(t, pgtest.URL(t), postgres.Options{Writers: 1})
	plan, err := postgres.GroupRedeemPlanForTest(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan, "Seq Scan on sign_in_tokens") || !strings.Contains(plan, "sign_in_tokens_pkey") {
		t.Errorf("the grouped redemption's generic plan does not go by the primary key:\n%s", plan)
	}
}
