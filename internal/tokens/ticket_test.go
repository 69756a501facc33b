package tokens_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func newTicketer(t testing.TB) (*tokens.Ticketer, tokens.SigningKey) {
	t.Helper()
	ks, err := tokens.NewKeySet(tokens.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	return tokens.NewTicketer(ks, "https://issuer.test", func() time.Time { return testNow }), ks.Signer()
}

func validToken() tokens.Token {
	return tokens.Token{ID: "sit_2pQxAbCdEfGhIjKlMnOpQrStUvW", UserID: "user_1", OrgID: "org_1",
		CreatedAt: testNow, ExpiresAt: testNow.Add(time.Hour)}
}

func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "https://issuer.test", "sub": "user_1", "jti": "sit_2pQxAbCdEfGhIjKlMnOpQrStUvW",
		"sid": "sit_2pQxAbCdEfGhIjKlMnOpQrStUvW", "st": "sign_in_token",
		"iat": testNow.Unix(), "exp": testNow.Add(time.Hour).Unix(),
	}
}

// sign signs claims with method and key, setting kid when given.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	jt := jwt.NewWithClaims(method, claims)
	if kid != "" {
		jt.Header["kid"] = kid
	}
	s, err := jt.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(v any) string {
	raw, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	tk, key := newTicketer(t)
	ticket, err := tk.Sign(validToken())
	if err != nil {
		t.Fatal(err)
	}
	claims, err := tk.Verify(ticket)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	want := validToken()
	if claims.ID != want.ID || claims.SessionID != want.ID || claims.Subject != want.UserID ||
		claims.OrgID != want.OrgID || claims.Type != "sign_in_token" || claims.Issuer != "https://issuer.test" ||
		!claims.ExpiresAt.Equal(want.ExpiresAt) || !claims.IssuedAt.Equal(want.CreatedAt) {
		t.Errorf("claims: got %+v", claims)
	}
	header := strings.Split(ticket, ".")[0]
	if want := b64(map[string]string{"alg": "EdDSA", "kid": key.ID, "typ": "JWT"}); header != want {
		t.Errorf("header: got %s, want %s", header, want)
	}
	again, _ := tk.Sign(validToken())
	if again != ticket {
		t.Error("signing the same token twice gave two tickets; Ed25519 is deterministic")
	}
}

// TestVerifyRejectsForgeries is the table of hostile tickets: each must be
// refused as invalid, never accepted and never reported as merely expired.
func TestVerifyRejectsForgeries(t *testing.T) {
	tk, key := newTicketer(t)
	other := tokens.GenerateKey()
	otherKS, _ := tokens.NewKeySet(other)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, validClaims())
	parts := strings.Split(valid, ".")
	with := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := validClaims()
		change(c)
		return c
	}
	tamperedClaims := validClaims()
	tamperedClaims["sub"] = "user_admin"

	cases := []struct {
		name   string
		ticket string
	}{
		{"empty", ""},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "."},
		{"alg none with kid", b64(map[string]string{"alg": "none", "kid": key.ID}) + "." + parts[1] + "."},
		{"HS256 keyed with the public key", sign(t, jwt.SigningMethodHS256, []byte(key.Public), key.ID, validClaims())},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, key.ID, validClaims())},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, key.Private, "not-a-key-of-ours", validClaims())},
		{"missing kid", sign(t, jwt.SigningMethodEdDSA, key.Private, "", validClaims())},
		{"another key under our kid", sign(t, jwt.SigningMethodEdDSA, other, key.ID, validClaims())},
		{"another key under its own kid", sign(t, jwt.SigningMethodEdDSA, other, otherKS.Signer().ID, validClaims())},
		{"wrong iss", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }))},
		{"wrong st", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) { c["st"] = "session" }))},
		{"no exp", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{"no iat", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) { delete(c, "iat") }))},
		{"no sub", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) { delete(c, "sub") }))},
		{"sid differs from jti", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) { c["sid"] = "sit_other" }))},
		{"jti with SQL", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) {
			c["jti"], c["sid"] = "sit_x' OR '1'='1", "sit_x' OR '1'='1"
		}))},
		{"exp as string", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) { c["exp"] = "never" }))},
		{"expired and wrong iss", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, with(func(c jwt.MapClaims) {
			c["exp"], c["iss"] = testNow.Add(-time.Hour).Unix(), "https://evil.test"
		}))},
		{"tampered payload", parts[0] + "." + b64(tamperedClaims) + "." + parts[2]},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
		{"signature of another ticket", parts[0] + "." + parts[1] + "." +
			strings.Split(sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID, tamperedClaims), ".")[2]},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2]},
		{"jwk header with the attacker's key", func() string {
			jt := jwt.NewWithClaims(jwt.SigningMethodEdDSA, validClaims())
			jt.Header["jwk"] = otherKS.JWKS()[0]
			jt.Header["jku"] = "https://evil.test/jwks.json"
			s, _ := jt.SignedString(other)
			return s
		}()},
		{"two segments", parts[0] + "." + parts[1]},
		{"four segments", valid + ".AAAA"},
		{"1 MB of dots", strings.Repeat(".", 1<<20)},
		{"far larger than any ticket we issue", sign(t, jwt.SigningMethodEdDSA, key.Private, key.ID,
			with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 8000) }))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := tk.Verify(tc.ticket)
			if !errors.Is(err, tokens.ErrTicketInvalid) {
				t.Errorf("got claims %+v, err %v; want %v", claims, err, tokens.ErrTicketInvalid)
			}
		})
	}
	// The untouched ticket passes, so the table above fails for its own reasons.
	if _, err := tk.Verify(valid); err != nil {
		t.Fatalf("control ticket: %v", err)
	}
}

func TestVerifyExpiry(t *testing.T) {
	key := tokens.GenerateKey()
	ks, _ := tokens.NewKeySet(key)
	now := testNow
	tk := tokens.NewTicketer(ks, "https://issuer.test", func() time.Time { return now })
	ticket, _ := tk.Sign(validToken()) // expires at testNow + 1h
	for _, tc := range []struct {
		at   time.Duration
		want error
	}{
		{0, nil},
		{time.Hour - time.Second, nil},
		{time.Hour, tokens.ErrTicketExpired},
		{48 * time.Hour, tokens.ErrTicketExpired},
	} {
		now = testNow.Add(tc.at)
		if _, err := tk.Verify(ticket); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("at +%s: got %v, want %v", tc.at, err, tc.want)
		}
	}
}

// TestKeyRotation: a ticket signed by the old key verifies while the old key
// is still in the set behind a new one, and fails once it is removed.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := tokens.GenerateKey(), tokens.GenerateKey()
	clock := func() time.Time { return testNow }
	before, _ := tokens.NewKeySet(oldKey)
	ticket, err := tokens.NewTicketer(before, "iss", clock).Sign(validToken())
	if err != nil {
		t.Fatal(err)
	}
	rotated, _ := tokens.NewKeySet(newKey, oldKey)
	during := tokens.NewTicketer(rotated, "iss", clock)
	if _, err := during.Verify(ticket); err != nil {
		t.Errorf("old ticket with the old key second: got %v, want it valid", err)
	}
	fresh, _ := during.Sign(validToken())
	if !strings.Contains(fresh, ".") || strings.Split(fresh, ".")[0] == strings.Split(ticket, ".")[0] {
		t.Error("after rotation the new key does not sign")
	}
	after, _ := tokens.NewKeySet(newKey)
	if _, err := tokens.NewTicketer(after, "iss", clock).Verify(ticket); !errors.Is(err, tokens.ErrTicketInvalid) {
		t.Errorf("old ticket after the old key is removed: got %v, want %v", err, tokens.ErrTicketInvalid)
	}
}

func TestPEMRoundTrip(t *testing.T) {
	a, b := tokens.GenerateKey(), tokens.GenerateKey()
	data, err := tokens.EncodePEM(a, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tokens.ParsePEM(data)
	if err != nil || len(got) != 2 || !got[0].Equal(a) || !got[1].Equal(b) {
		t.Fatalf("got %d keys, err %v; want the two keys in order", len(got), err)
	}
	for _, bad := range []string{"", "not pem", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"} {
		if _, err := tokens.ParsePEM([]byte(bad)); err == nil {
			t.Errorf("ParsePEM(%q): got no error", bad)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 1000; i++ {
		id := tokens.KindSignIn.NewID(now)
		if len(id) != 31 || !strings.HasPrefix(id, "sit_") || !tokens.ValidID(id) || seen[id] {
			t.Fatalf("id %q: want sit_ and 27 unique base62 characters", id)
		}
		seen[id] = true
	}
	// Ids sort by creation time, to the second, byte by byte: across a
	// carry of each base62 digit, and at the ends of the range.
	times := []time.Time{time.Unix(0, 0), time.Unix(61, 0), time.Unix(62, 0), time.Unix(3843, 0),
		time.Unix(3844, 0), now, now.Add(time.Second), now.Add(time.Minute), now.AddDate(100, 0, 0)}
	for i := 1; i < len(times); i++ {
		a, b := tokens.KindSignIn.NewID(times[i-1]), tokens.KindSignIn.NewID(times[i])
		if a >= b {
			t.Errorf("id at %v (%s) does not sort before id at %v (%s)", times[i-1], a, times[i], b)
		}
	}
	if id := tokens.KindSignIn.NewID(time.Unix(-5, 0)); !strings.HasPrefix(id, "sit_000000") {
		t.Errorf("id before 1970: got %s, want the time part clamped to 000000", id)
	}
	for _, bad := range []string{"", "sit_a/b", "sit_' OR 1=1", "sit_%2F", strings.Repeat("a", 65)} {
		if tokens.ValidID(bad) {
			t.Errorf("ValidID(%q): got true", bad)
		}
	}
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
	tok := tokens.Token{ID: tokens.KindSignIn.NewID(now), UserID: "user_1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
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

// TestActorTickets: an actor token's ticket says st actor_token and carries
// the actor's sub as RFC 8693's act claim; a ticket whose kind, id and act
// disagree is invalid even when signed with our key.
func TestActorTickets(t *testing.T) {
	tk, signer := newTicketer(t)
	tok := validToken()
	tok.ID = "act_2pQxAbCdEfGhIjKlMnOpQrStUvW"
	tok.Actor = []byte(`{"sub":"user_support","reason":"x"}`)
	ticket, err := tk.Sign(tok)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := tk.Verify(ticket)
	if err != nil || claims.Type != "actor_token" || claims.Actor == nil || claims.Actor.Subject != "user_support" {
		t.Fatalf("actor ticket: %+v, %v", claims, err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(ticket, ".")[1])
	if strings.Contains(string(payload), "reason") {
		t.Errorf("the ticket carries more of the actor than its sub: %s", payload)
	}
	noActor := tok
	noActor.Actor = []byte(`{"name":"x"}`)
	if _, err := tk.Sign(noActor); err == nil {
		t.Error("Sign of an actor token without an actor sub: got nil error")
	}

	sign := func(change func(jwt.MapClaims)) string {
		c := validClaims()
		change(c)
		jt := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		jt.Header["kid"] = signer.ID
		s, err := jt.SignedString(signer.Private)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	actorID := func(c jwt.MapClaims) { c["jti"], c["sid"] = tok.ID, tok.ID }
	for name, change := range map[string]func(jwt.MapClaims){
		"sign-in ticket with act":         func(c jwt.MapClaims) { c["act"] = map[string]any{"sub": "x"} },
		"st actor_token on a sit_ id":     func(c jwt.MapClaims) { c["st"] = "actor_token"; c["act"] = map[string]any{"sub": "x"} },
		"st sign_in_token on an act_ id":  func(c jwt.MapClaims) { actorID(c) },
		"actor ticket without act":        func(c jwt.MapClaims) { actorID(c); c["st"] = "actor_token" },
		"actor ticket with an empty sub":  func(c jwt.MapClaims) { actorID(c); c["st"] = "actor_token"; c["act"] = map[string]any{"sub": ""} },
		"actor ticket with act not a map": func(c jwt.MapClaims) { actorID(c); c["st"] = "actor_token"; c["act"] = "x" },
		"unknown st":                      func(c jwt.MapClaims) { c["st"] = "session" },
		"unknown id prefix": func(c jwt.MapClaims) {
			c["jti"], c["sid"] = "usr_2pQxAbCdEfGhIjKlMnOpQrStUvW", "usr_2pQxAbCdEfGhIjKlMnOpQrStUvW"
		},
	} {
		if _, err := tk.Verify(sign(change)); !errors.Is(err, tokens.ErrTicketInvalid) {
			t.Errorf("%s: got %v, want %v", name, err, tokens.ErrTicketInvalid)
		}
	}
}

// TestSignMatchesGolangJWT holds Sign, which encodes the header once, to
// what golang-jwt's SignedString makes of the same claims, byte for byte.
func TestSignMatchesGolangJWT(t *testing.T) {
	tk, signer := newTicketer(t)
	actor := validToken()
	actor.ID, actor.OrgID, actor.Actor = "act_2pQxAbCdEfGhIjKlMnOpQrStUvW", "", []byte(`{"sub":"user_<support>"}`)
	odd := validToken()
	odd.UserID, odd.OrgID = "user_<&>\u2028\"é\\", ""
	for name, tok := range map[string]tokens.Token{"sign-in": validToken(), "actor": actor, "escaped user id": odd} {
		got, err := tk.Sign(tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		claims := tokens.TicketClaims{SessionID: tok.ID, Type: string(tok.Kind()), OrgID: tok.OrgID,
			RegisteredClaims: jwt.RegisteredClaims{Issuer: "https://issuer.test", Subject: tok.UserID, ID: tok.ID,
				IssuedAt:  jwt.NewNumericDate(tok.CreatedAt.Truncate(time.Second)),
				ExpiresAt: jwt.NewNumericDate(tok.ExpiresAt.Truncate(time.Second))}}
		if sub, ok := tokens.ActorSubject(tok.Actor); ok {
			claims.Actor = &tokens.ActClaim{Subject: sub}
		}
		jt := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		jt.Header["kid"] = signer.ID
		want, err := jt.SignedString(signer.Private)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: got %s, want %s", name, got, want)
		}
	}
}
