package tokens_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// signWithLibrary is how tickets were signed before Sign was written by
// hand: golang-jwt with the kid header. Sign must give the same bytes, or
// idempotent replays of tickets issued before could not rebuild them.
func signWithLibrary(t *testing.T, ks *tokens.KeySet, issuer string, tok tokens.Token) string {
	t.Helper()
	claims := tokens.TicketClaims{
		SessionID: tok.ID, Type: tokens.TicketType, OrgID: tok.OrgID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: tok.UserID, ID: tok.ID,
			IssuedAt:  jwt.NewNumericDate(tok.CreatedAt.Truncate(time.Second)),
			ExpiresAt: jwt.NewNumericDate(tok.ExpiresAt.Truncate(time.Second)),
		},
	}
	jt := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	jt.Header["kid"] = ks.Signer().ID
	s, err := jt.SignedString(ks.Signer().Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignMatchesLibrary(t *testing.T) {
	ks, err := tokens.NewKeySet(tokens.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 987_000_000, time.UTC)
	odd := []string{"", "user_123", `q"uote\back`, "<html>&", "ünï ✓", "sep\u2028\u2029", "ctl\x01\t\n\b\f", "bad \xff"}
	for _, issuer := range []string{"signin-tokens", "https://tokens.example.com/?a=1&b=<2>", ""} {
		for _, s := range odd {
			for _, tok := range []tokens.Token{
				{ID: tokens.NewID(), UserID: s, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
				{ID: tokens.NewID(), UserID: "user_1", OrgID: s, CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)},
				{ID: s, UserID: s, OrgID: s, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Second)},
			} {
				tk := tokens.NewTicketer(ks, issuer, func() time.Time { return now })
				got, err := tk.Sign(tok)
				if err != nil {
					t.Fatal(err)
				}
				if want := signWithLibrary(t, ks, issuer, tok); got != want {
					t.Errorf("Sign(%+v) with issuer %q\n got %s\nwant %s", tok, issuer, got, want)
				}
			}
		}
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `"\`, "<>&", "\u2028\u2029", "\x00\x1f\x7f", "\xff\xfe", "ünï"} {
		want, _ := json.Marshal(s)
		if got := tokens.AppendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("user_123")
	f.Add("<&>\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := tokens.AppendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// TestVerifyRefusesAlteredTickets runs tickets changed in one place
// through Verify: none may pass, and none may panic.
func TestVerifyRefusesAlteredTickets(t *testing.T) {
	ks, err := tokens.NewKeySet(tokens.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tk := tokens.NewTicketer(ks, "iss", func() time.Time { return now })
	tok := tokens.Token{ID: tokens.NewID(), UserID: "user_1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	ticket, err := tk.Sign(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Verify(ticket); err != nil {
		t.Fatalf("Verify(own ticket) = %v", err)
	}
	altered := []string{ticket + "A", ticket + "AAAA", ticket[:len(ticket)-1], ticket + ".", "." + ticket,
		strings.Replace(ticket, ".", "..", 1), ticket[:len(ticket)-2] + "A=", ticket + strings.Repeat("A", 100)}
	for i := range ticket {
		c := byte('A')
		if ticket[i] == 'A' {
			c = 'B'
		}
		altered = append(altered, ticket[:i]+string(c)+ticket[i+1:])
	}
	for _, a := range altered {
		if _, err := tk.Verify(a); !errors.Is(err, tokens.ErrTicketInvalid) {
			t.Errorf("Verify(%q) = %v, want %v", a, err, tokens.ErrTicketInvalid)
		}
	}
}
