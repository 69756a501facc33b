package tokens

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTicketBytes bounds what Verify will parse. Tickets we issue are a few
// hundred bytes; anything far larger is refused before any decoding.
const MaxTicketBytes = 4096

// TicketClaims are the claims of a ticket JWT.
type TicketClaims struct {
	SessionID string `json:"sid"`
	Type      string `json:"st"` // the token's kind
	OrgID     string `json:"org_id,omitempty"`
	// Actor is RFC 8693's "act" claim: who acts, in actor tickets only.
	Actor *ActClaim `json:"act,omitempty"`
	jwt.RegisteredClaims
}

// ActClaim is the "act" claim of an actor ticket.
type ActClaim struct {
	Subject string `json:"sub"`
}

// Ticketer signs and verifies tickets with a key set and an issuer.
type Ticketer struct {
	keys   *KeySet
	issuer string
	parser *jwt.Parser
	now    func() time.Time
	// header is the signer's JOSE header, encoded once as golang-jwt encodes
	// it: every ticket carries the same one.
	header  string
	keyFunc jwt.Keyfunc // t.key, made once: a method value made per call allocates
	// public holds the set's verification keys by kid, already in the
	// interface a Keyfunc returns, so that returning one allocates nothing.
	public map[string]any
}

// NewTicketer returns a Ticketer. now is the clock expiry is checked against.
func NewTicketer(keys *KeySet, issuer string, now func() time.Time) *Ticketer {
	t := &Ticketer{keys: keys, issuer: issuer, now: now}
	jt := jwt.New(jwt.SigningMethodEdDSA)
	jt.Header["kid"] = keys.Signer().ID
	header, err := json.Marshal(jt.Header)
	if err != nil {
		panic("tokens: cannot encode a JOSE header: " + err.Error()) // strings only
	}
	t.header = jt.EncodeSegment(header)
	t.keyFunc = t.key
	t.public = make(map[string]any, len(keys.Keys()))
	for _, k := range keys.Keys() {
		t.public[k.ID] = k.Public
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithStrictDecoding(),
		// Claims are checked below, in an order that keeps "expired" for
		// tickets that are otherwise entirely ours.
		jwt.WithoutClaimsValidation(),
	)
	return t
}

// Keys returns the ticketer's key set.
func (t *Ticketer) Keys() *KeySet { return t.keys }

// Sign returns the ticket for tok. Ed25519 signatures are deterministic, so the
// same token always yields the same ticket.
func (t *Ticketer) Sign(tok Token) (string, error) {
	k := t.keys.Signer()
	claims := TicketClaims{
		SessionID: tok.ID,
		Type:      string(tok.Kind()),
		OrgID:     tok.OrgID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   tok.UserID,
			ID:        tok.ID,
			IssuedAt:  jwt.NewNumericDate(tok.CreatedAt.Truncate(time.Second)),
			ExpiresAt: jwt.NewNumericDate(tok.ExpiresAt.Truncate(time.Second)),
		},
	}
	if tok.Kind() == KindActor {
		sub, ok := ActorSubject(tok.Actor)
		if !ok {
			return "", errors.New("an actor token without an actor sub")
		}
		claims.Actor = &ActClaim{Subject: sub}
	}
	// What golang-jwt's SignedString makes, byte for byte (a test holds it
	// to that), with the header encoded once and one buffer for the rest.
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := len(t.header) + 1 + enc.EncodedLen(len(payload))
	b := make([]byte, signed, signed+1+enc.EncodedLen(ed25519.SignatureSize))
	n := copy(b, t.header)
	b[n] = '.'
	enc.Encode(b[n+1:], payload)
	sig := ed25519.Sign(k.Private, b)
	b = append(b, '.')
	b = enc.AppendEncode(b, sig)
	return string(b), nil
}

// Verify checks a ticket's size, algorithm, key, signature and claims, and
// returns its claims. It fails with ErrTicketInvalid, or ErrTicketExpired for a
// ticket we signed whose expiry has passed. Only the kid header selects a key,
// and only from the configured set; jku, x5u and jwk headers are never read.
func (t *Ticketer) Verify(ticket string) (*TicketClaims, error) {
	if len(ticket) == 0 || len(ticket) > MaxTicketBytes {
		return nil, ErrTicketInvalid
	}
	claims := &TicketClaims{}
	if _, err := t.parser.ParseWithClaims(ticket, claims, t.keyFunc); err != nil {
		return nil, ErrTicketInvalid
	}
	kind := KindOf(claims.ID)
	if claims.Issuer != t.issuer || kind == "" || claims.Type != string(kind) ||
		claims.SessionID != claims.ID || !ValidID(claims.ID) || claims.Subject == "" ||
		claims.IssuedAt == nil || claims.ExpiresAt == nil {
		return nil, ErrTicketInvalid
	}
	// An actor ticket names its actor, and only an actor ticket does: a
	// ticket of one kind cannot pass for the other.
	if (kind == KindActor) != (claims.Actor != nil) || claims.Actor != nil && claims.Actor.Subject == "" {
		return nil, ErrTicketInvalid
	}
	if !t.now().Before(claims.ExpiresAt.Time) {
		return nil, ErrTicketExpired
	}
	return claims, nil
}

// errUnknownKid refuses a ticket whose kid names no key of the set.
var errUnknownKid = errors.New("unknown kid")

// key is Verify's jwt.Keyfunc: the key the kid header names, from the
// configured set only.
func (t *Ticketer) key(jt *jwt.Token) (any, error) {
	kid, _ := jt.Header["kid"].(string)
	pub, ok := t.public[kid]
	if !ok {
		return nil, errUnknownKid
	}
	return pub, nil
}

// HashTicket returns the SHA-256 of a ticket: what the store keeps instead of it.
func HashTicket(ticket string) []byte {
	sum := sha256.Sum256([]byte(ticket))
	return sum[:]
}

// ActorSubject returns the "sub" of an actor object: a non-empty string.
func ActorSubject(actor []byte) (string, bool) {
	var a struct {
		Sub *string `json:"sub"`
	}
	if json.Unmarshal(actor, &a) != nil || a.Sub == nil || *a.Sub == "" {
		return "", false
	}
	return *a.Sub, true
}
