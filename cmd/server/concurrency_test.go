package main

import (
	"fmt"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestRedeemRaceOverHTTP releases 48 callers at once on one ticket through
// the real server on PostgreSQL: exactly one is accepted, every other one is
// told the ticket was already used, and nobody sees a 5xx.
func TestRedeemRaceOverHTTP(t *testing.T) {
	t.Parallel()
	in := startOnPostgres(t)
	tok, err := createTicket(in.base, "user_race")
	if err != nil {
		t.Fatal(err)
	}

	const callers = 48
	replies := together(t, callers, func(int) (reply, error) {
		return send(in.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tok.ticket))
	})

	var winner reply
	accepted, used := 0, 0
	for i, r := range replies {
		switch {
		case r.status == 200:
			accepted++
			winner = r
			if r.body["id"] != tok.id || r.body["status"] != "accepted" {
				t.Errorf("caller %d: accepted %v, want %s accepted", i, r, tok.id)
			}
		case r.code() == tokens.CodeAlreadyUsed:
			used++
			checkError(t, fmt.Sprintf("caller %d", i), r, 400, tokens.CodeAlreadyUsed)
		default:
			t.Errorf("caller %d: got %v, want 200 or 400 %s", i, r, tokens.CodeAlreadyUsed)
		}
	}
	if accepted != 1 || used != callers-1 {
		t.Fatalf("accepted %d and already used %d, want 1 and %d", accepted, used, callers-1)
	}
	// The stored acceptance is the one the winner was told of.
	r := mustSend(t, in.base, "GET", "/v1/sign_in_tokens/"+tok.id, testSecretKey, "")
	if r.status != 200 || r.body["status"] != "accepted" || r.body["accepted_at"] != winner.body["accepted_at"] {
		t.Fatalf("stored token: got %v, want accepted at %v", r, winner.body["accepted_at"])
	}
}

// TestRevokeRacesRedeemOverHTTP releases, all at once, a redeem and a revoke
// of each of 30 tickets: for every ticket exactly one of the two succeeds,
// the other gets the code that names why, and the stored status matches the
// winner.
func TestRevokeRacesRedeemOverHTTP(t *testing.T) {
	t.Parallel()
	in := startOnPostgres(t)
	const tickets = 30
	toks := make([]issued, tickets)
	for i := range toks {
		var err error
		if toks[i], err = createTicket(in.base, fmt.Sprintf("user_%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	// Even calls redeem ticket i/2, odd calls revoke it.
	replies := together(t, 2*tickets, func(i int) (reply, error) {
		tok := toks[i/2]
		if i%2 == 0 {
			return send(in.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tok.ticket))
		}
		return send(in.base, "POST", "/v1/sign_in_tokens/"+tok.id+"/revoke", testSecretKey, "")
	})

	redeemWins, revokeWins := 0, 0
	for i, tok := range toks {
		redeem, revoke := replies[2*i], replies[2*i+1]
		var want string
		switch {
		case redeem.status == 200 && revoke.status != 200:
			redeemWins++
			want = "accepted"
			checkError(t, "revoke after redeem of "+tok.id, revoke, 400, tokens.CodeCannotRevoke)
		case revoke.status == 200 && redeem.status != 200:
			revokeWins++
			want = "revoked"
			checkError(t, "redeem after revoke of "+tok.id, redeem, 400, tokens.CodeRevoked)
		default:
			t.Errorf("%s: redeem %v, revoke %v: want exactly one 200", tok.id, redeem, revoke)
			continue
		}
		r := mustSend(t, in.base, "GET", "/v1/sign_in_tokens/"+tok.id, testSecretKey, "")
		if r.status != 200 || r.body["status"] != want {
			t.Errorf("%s: stored %v, want status %s", tok.id, r, want)
		}
	}
	if redeemWins+revokeWins != tickets {
		t.Fatalf("redeem won %d and revoke won %d, want %d in all", redeemWins, revokeWins, tickets)
	}
	t.Logf("redeem won %d, revoke won %d", redeemWins, revokeWins)
}
