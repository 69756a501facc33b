package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestLockedRowsOverHTTP is the locked-row scenario end to end: with two
// tokens' rows held by another transaction and REQUEST_TIMEOUT=2s, 60
// redemptions (those two among them) and 40 creates of other users are sent
// at once. Only the two locked redemptions may fail, with 503.
func TestLockedRowsOverHTTP(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	env := serverEnv(t, dbURL)
	env["REQUEST_TIMEOUT"] = "2s"
	in := start(t, env)
	t.Cleanup(testClient.CloseIdleConnections)
	waitReady(t, in.base)

	var tickets []issued
	for i := range 60 {
		tok, err := createTicket(in.base, fmt.Sprintf("user_%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tok)
	}
	db := connect(t, dbURL)
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	locked := map[int]bool{7: true, 41: true}
	for i := range locked {
		if _, err := tx.Exec(ctx, "SELECT 1 FROM sign_in_tokens WHERE id = $1 FOR UPDATE", tickets[i].id); err != nil {
			t.Fatal(err)
		}
	}

	replies := together(t, 100, func(i int) (reply, error) {
		if i < len(tickets) {
			return send(in.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tickets[i].ticket))
		}
		return send(in.base, "POST", "/v1/sign_in_tokens", testSecretKey, fmt.Sprintf(`{"user_id":"new_user_%02d"}`, i))
	})
	failed := 0
	for i, r := range replies {
		switch {
		case locked[i]:
			checkError(t, fmt.Sprintf("redeem of locked token %d", i), r, 503, tokens.CodeUnavailable)
		case r.status != 200:
			failed++
			t.Errorf("request %d, unrelated to the locked rows: %v", i, r)
		}
	}
	t.Logf("unrelated requests that failed: %d of %d", failed, len(replies)-len(locked))
}
