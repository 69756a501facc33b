package tokens_test

import (
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// benchTicketer returns a ticketer with one fresh key and a token to sign.
func benchTicketer(b *testing.B) (*tokens.Ticketer, tokens.Token) {
	b.Helper()
	ks, err := tokens.NewKeySet(tokens.GenerateKey())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	tok := tokens.Token{ID: tokens.KindSignIn.NewID(time.Now()), UserID: "user_2pQxBenchmark", Status: tokens.StatusPending,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}
	return tokens.NewTicketer(ks, "https://tokens.example.com", time.Now), tok
}

func BenchmarkSign(b *testing.B) {
	tk, tok := benchTicketer(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Sign(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	tk, tok := benchTicketer(b)
	ticket, err := tk.Sign(tok)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Verify(ticket); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyForged is a ticket whose signature does not match: what a
// guessing caller costs.
func BenchmarkVerifyForged(b *testing.B) {
	tk, tok := benchTicketer(b)
	ticket, err := tk.Sign(tok)
	if err != nil {
		b.Fatal(err)
	}
	forged := ticket[:len(ticket)-4] + "AAAA"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Verify(forged); err == nil {
			b.Fatal("forged ticket verified")
		}
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		tokens.KindSignIn.NewID(time.Now())
	}
}
