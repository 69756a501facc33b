package tokens_test

import (
	"errors"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// FuzzVerify: no input panics Verify, every refusal is one of the two ticket
// errors, and the only inputs ever accepted are tickets the ticketer issued.
func FuzzVerify(f *testing.F) {
	tk, _ := newTicketer(f)
	issued := map[string]bool{}
	for i, d := range []time.Duration{time.Hour, -time.Hour} {
		tok := validToken()
		tok.ExpiresAt = testNow.Add(d)
		tok.OrgID = []string{"org_1", ""}[i]
		ticket, err := tk.Sign(tok)
		if err != nil {
			f.Fatal(err)
		}
		issued[ticket] = true
		f.Add(ticket)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Fuzz(func(t *testing.T, ticket string) {
		claims, err := tk.Verify(ticket)
		switch {
		case err == nil:
			if !issued[ticket] {
				t.Fatalf("accepted a ticket that was never issued: %q (claims %+v)", ticket, claims)
			}
		case !errors.Is(err, tokens.ErrTicketInvalid) && !errors.Is(err, tokens.ErrTicketExpired):
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}
