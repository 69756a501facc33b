package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestReplicasRedeemEachTicketOnce runs three server processes on one
// PostgreSQL schema with shared keys, issues 200 tickets through all three,
// then redeems every ticket six times at once, twice through each process.
// Each ticket is accepted exactly once, the database holds every token as
// accepted at the moment the one winner was told, and all three processes
// stop cleanly on SIGTERM (with -race, a data race would fail the exit code).
func TestReplicasRedeemEachTicketOnce(t *testing.T) {
	t.Parallel()
	const (
		replicas   = 3
		tickets    = 200
		perReplica = 2  // redeem attempts per ticket through each replica
		inFlight   = 12 // tickets raced at a time
	)
	dbURL := pgtest.URL(t)
	keyFile, _ := writeSigningKey(t)
	procs := make([]*process, replicas)
	for i := range procs {
		env := serverEnv(t, dbURL)
		env["SIGNING_KEY_FILE"] = keyFile
		procs[i] = spawn(t, env) // they migrate at once, under the migration lock
	}
	for _, p := range procs {
		waitReady(t, p.base)
	}

	// Issue the tickets, spread over the replicas.
	toks := make([]issued, tickets)
	var wg sync.WaitGroup
	next := make(chan int)
	for range inFlight {
		wg.Go(func() {
			for i := range next {
				tok, err := createTicket(procs[i%replicas].base, fmt.Sprintf("user_%d", i))
				if err != nil {
					t.Error(err)
				}
				toks[i] = tok
			}
		})
	}
	for i := range tickets {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Race every ticket: all its attempts are released together, and
	// inFlight tickets are raced at a time.
	type outcome struct {
		accepted, used int
		winner         reply
		winnerReplica  int
	}
	outcomes := make([]outcome, tickets)
	var served [replicas]struct{ requests, accepted int }
	var mu sync.Mutex
	next = make(chan int)
	for range inFlight {
		wg.Go(func() {
			for i := range next {
				const attempts = replicas * perReplica
				replies := together(t, attempts, func(a int) (reply, error) {
					return send(procs[a%replicas].base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(toks[i].ticket))
				})
				mu.Lock()
				for a, r := range replies {
					served[a%replicas].requests++
					switch {
					case r.status == 200 && r.body["id"] == toks[i].id:
						outcomes[i].accepted++
						outcomes[i].winner, outcomes[i].winnerReplica = r, a%replicas
						served[a%replicas].accepted++
					case r.status == 400 && r.code() == tokens.CodeAlreadyUsed:
						outcomes[i].used++
					default:
						t.Errorf("ticket %d attempt %d: got %v, want 200 or 400 %s", i, a, r, tokens.CodeAlreadyUsed)
					}
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	for i := range tickets {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d redemptions in %s", tickets*replicas*perReplica, time.Since(start))

	for i, o := range outcomes {
		if o.accepted != 1 || o.used != replicas*perReplica-1 {
			t.Errorf("ticket %d: accepted %d times and already used %d times, want 1 and %d", i, o.accepted, o.used, replicas*perReplica-1)
		}
	}
	total := 0
	for r, s := range served {
		total += s.accepted
		// Every replica took its share of requests and won some races: the
		// requests really were spread over three processes.
		if s.requests != tickets*perReplica || s.accepted == 0 {
			t.Errorf("replica %d: %d requests, %d accepted; want %d requests and some accepted", r, s.requests, s.accepted, tickets*perReplica)
		}
	}
	if total != tickets {
		t.Errorf("accepted %d in all, want %d", total, tickets)
	}
	t.Logf("accepted per replica: %d, %d, %d", served[0].accepted, served[1].accepted, served[2].accepted)

	// The database agrees: every token, and only those, accepted once, at
	// the time its winner was told.
	checkAcceptedOnce(t, dbURL, toks, func(i int) reply { return outcomes[i].winner })

	testClient.CloseIdleConnections()
	for _, p := range procs {
		p.terminate()
	}
	for i, p := range procs {
		if code := p.waitExit(20 * time.Second); code != 0 {
			t.Errorf("replica %d exited with %d, want 0", i, code)
		}
	}
}

// checkAcceptedOnce reads the tokens table directly: it holds exactly toks,
// each accepted, with accepted_at and updated_at equal to the accepted_at
// its winning redeem reported.
func checkAcceptedOnce(t *testing.T, dbURL string, toks []issued, winner func(i int) reply) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := connect(t, dbURL).Query(ctx, `SELECT id, status, accepted_at, updated_at, revoked_at IS NULL FROM sign_in_tokens`)
	if err != nil {
		t.Fatal(err)
	}
	type stored struct {
		status              string
		acceptedAt, updated *time.Time
		notRevoked          bool
	}
	byID := map[string]stored{}
	for rows.Next() {
		var id string
		var s stored
		if err := rows.Scan(&id, &s.status, &s.acceptedAt, &s.updated, &s.notRevoked); err != nil {
			t.Fatal(err)
		}
		byID[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(byID) != len(toks) {
		t.Errorf("stored %d tokens, want %d", len(byID), len(toks))
	}
	for i, tok := range toks {
		s, ok := byID[tok.id]
		want, _ := winner(i).body["accepted_at"].(float64)
		switch {
		case !ok:
			t.Errorf("%s: not stored", tok.id)
		case s.status != "accepted" || !s.notRevoked || s.acceptedAt == nil:
			t.Errorf("%s: stored status %s, accepted_at %v, want accepted", tok.id, s.status, s.acceptedAt)
		case s.acceptedAt.UnixMilli() != int64(want) || s.updated.UnixMilli() != int64(want):
			t.Errorf("%s: stored accepted_at %v, updated_at %v; the winner was told %d", tok.id, s.acceptedAt, s.updated, int64(want))
		}
	}
}

// TestReplicasKeepTheCodeCapOverHTTP: three server processes sharing one
// schema and one CODE_SECRETS, the per-user rate limit off; 50 wrong codes for
// one user sent at once, spread over the three. The database counts exactly
// CODE_MAX_ATTEMPTS of them, exactly that many answers are 422
// form_code_incorrect, the rest 400 verification_failed, and the right code
// is then refused too.
func TestReplicasKeepTheCodeCapOverHTTP(t *testing.T) {
	t.Parallel()
	const replicas, guesses, maxAttempts = 3, 50, 5
	dbURL := pgtest.URL(t)
	keyFile, _ := writeSigningKey(t)
	procs := make([]*process, replicas)
	for i := range procs {
		env := serverEnv(t, dbURL)
		env["SIGNING_KEY_FILE"] = keyFile
		env["CODE_SECRETS"] = "a-shared-code-secret-for-the-three-replicas-0123456789"
		env["CODE_MAX_ATTEMPTS"] = fmt.Sprint(maxAttempts)
		env["RATE_LIMIT_CODE_PER_MINUTE"] = "0"
		procs[i] = spawn(t, env)
	}
	for _, p := range procs {
		waitReady(t, p.base)
	}
	created := mustSend(t, procs[0].base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_cap","code_length":6}`)
	code, _ := created.body["code"].(string)
	if created.status != 200 || len(code) != 6 {
		t.Fatalf("create: %v", created)
	}
	replies := together(t, guesses, func(i int) (reply, error) {
		wrong := fmt.Sprintf("%06d", (i*7919+13)%1000000)
		if wrong == code {
			wrong = fmt.Sprintf("%06d", (i*7919+14)%1000000)
		}
		return send(procs[i%replicas].base, "POST", "/v1/tickets/redeem", testSecretKey,
			fmt.Sprintf(`{"user_id":"user_cap","code":%q}`, wrong))
	})
	counts := map[string]int{}
	for _, r := range replies {
		counts[r.code()]++
	}
	if counts[tokens.CodeCodeIncorrect] != maxAttempts || counts[tokens.CodeVerificationFailed] != guesses-maxAttempts {
		t.Errorf("answers to %d wrong codes: %v, want %d %s and the rest %s", guesses, counts,
			maxAttempts, tokens.CodeCodeIncorrect, tokens.CodeVerificationFailed)
	}
	var attempts int
	if err := connect(t, dbURL).QueryRow(context.Background(),
		`SELECT attempts FROM sign_in_token_codes WHERE token_id = $1`, created.body["id"]).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != maxAttempts {
		t.Errorf("attempts counted in the database: %d, want %d", attempts, maxAttempts)
	}
	r := mustSend(t, procs[1].base, "POST", "/v1/tickets/redeem", testSecretKey, fmt.Sprintf(`{"user_id":"user_cap","code":%q}`, code))
	checkError(t, "the right code after the cap", r, 400, tokens.CodeVerificationFailed)
}
