package tokens

import (
	"crypto/sha256"
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
}

// NewTicketer returns a Ticketer. now is the clock expiry is checked against.
func NewTicketer(keys *KeySet, issuer string, now func() time.Time) *Ticketer {
	t := &Ticketer{keys: keys, issuer: issuer, now: now}
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
	jt := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	jt.Header["kid"] = k.ID
	return jt.SignedString(k.Private)
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
	_, err := t.parser.ParseWithClaims(ticket, claims, func(jt *jwt.Token) (any, error) {
		kid, _ := jt.Header["kid"].(string)
		pub, ok := t.keys.Public(kid)
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return pub, nil
	})
	if err != nil {
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
