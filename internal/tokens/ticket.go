package tokens

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TicketType is the "st" claim every ticket carries.
const TicketType = "sign_in_token"

// MaxTicketBytes bounds what Verify will parse. Tickets we issue are a few
// hundred bytes; anything far larger is refused before any decoding.
const MaxTicketBytes = 4096

// TicketClaims are the claims of a ticket JWT.
type TicketClaims struct {
	SessionID string `json:"sid"`
	Type      string `json:"st"`
	OrgID     string `json:"org_id,omitempty"`
	jwt.RegisteredClaims
}

// Ticketer signs and verifies tickets with a key set and an issuer.
type Ticketer struct {
	keys     *KeySet
	issuer   string
	now      func() time.Time
	header   string                       // the signer's encoded JWT header
	byHeader map[string]ed25519.PublicKey // every key's encoded header
}

// NewTicketer returns a Ticketer. now is the clock expiry is checked against.
func NewTicketer(keys *KeySet, issuer string, now func() time.Time) *Ticketer {
	t := &Ticketer{keys: keys, issuer: issuer, now: now, header: encodedHeader(keys.Signer().ID),
		byHeader: make(map[string]ed25519.PublicKey, len(keys.Keys()))}
	for _, k := range keys.Keys() {
		t.byHeader[encodedHeader(k.ID)] = k.Public
	}
	return t
}

// Keys returns the ticketer's key set.
func (t *Ticketer) Keys() *KeySet { return t.keys }

// Sign returns the ticket for tok. Ed25519 signatures are deterministic, so the
// same token always yields the same ticket. The JWT is put together by hand,
// byte for byte what golang-jwt writes for TicketClaims (a test holds it to
// that), so a ticket issued before can be rebuilt for an idempotent replay.
func (t *Ticketer) Sign(tok Token) (string, error) {
	k := t.keys.Signer()
	claims := make([]byte, 0, 256)
	claims = append(claims, `{"sid":`...)
	claims = AppendJSONString(claims, tok.ID)
	claims = append(claims, `,"st":"`+TicketType+`"`...)
	// The rest in RegisteredClaims' order, empty ones left out (omitempty).
	for _, f := range [...]struct{ name, value string }{{"org_id", tok.OrgID}, {"iss", t.issuer}, {"sub", tok.UserID}} {
		if f.value != "" {
			claims = append(claims, `,"`+f.name+`":`...)
			claims = AppendJSONString(claims, f.value)
		}
	}
	claims = append(claims, `,"exp":`...)
	claims = strconv.AppendInt(claims, tok.ExpiresAt.Truncate(time.Second).Unix(), 10)
	claims = append(claims, `,"iat":`...)
	claims = strconv.AppendInt(claims, tok.CreatedAt.Truncate(time.Second).Unix(), 10)
	if tok.ID != "" {
		claims = append(claims, `,"jti":`...)
		claims = AppendJSONString(claims, tok.ID)
	}
	claims = append(claims, '}')

	enc := base64.RawURLEncoding
	out := make([]byte, 0, len(t.header)+enc.EncodedLen(len(claims))+enc.EncodedLen(ed25519.SignatureSize)+2)
	out = append(out, t.header...)
	out = append(out, '.')
	out = enc.AppendEncode(out, claims)
	sig := ed25519.Sign(k.Private, out)
	out = append(out, '.')
	out = enc.AppendEncode(out, sig)
	return string(out), nil
}

// encodedHeader is the signer's JWT header as golang-jwt writes it (keys
// sorted), base64url-encoded; it is the same for every ticket.
func encodedHeader(kid string) string {
	h, _ := json.Marshal(map[string]string{"alg": jwt.SigningMethodEdDSA.Alg(), "kid": kid, "typ": "JWT"})
	return base64.RawURLEncoding.EncodeToString(h)
}

// Verify checks a ticket's size, header, key, signature and claims, and
// returns its claims. It fails with ErrTicketInvalid, or ErrTicketExpired for a
// ticket we signed whose expiry has passed.
//
// The header must be, byte for byte, the one Sign writes for a key of the
// set: that pins the algorithm and the key, and no other header (jku, x5u,
// jwk, alg none) is ever read. Only a ticket whose signature verifies has its
// claims decoded.
func (t *Ticketer) Verify(ticket string) (*TicketClaims, error) {
	if len(ticket) == 0 || len(ticket) > MaxTicketBytes {
		return nil, ErrTicketInvalid
	}
	header, rest, ok1 := strings.Cut(ticket, ".")
	payload, signature, ok2 := strings.Cut(rest, ".")
	pub, known := t.byHeader[header]
	if !ok1 || !ok2 || !known || strings.Contains(signature, ".") {
		return nil, ErrTicketInvalid
	}
	enc := base64.RawURLEncoding.Strict()
	var sig [ed25519.SignatureSize]byte
	if len(signature) != enc.EncodedLen(len(sig)) { // checked first: Decode must not overrun sig
		return nil, ErrTicketInvalid
	}
	if n, err := enc.Decode(sig[:], []byte(signature)); err != nil || n != len(sig) {
		return nil, ErrTicketInvalid
	}
	if !ed25519.Verify(pub, []byte(ticket[:len(header)+1+len(payload)]), sig[:]) {
		return nil, ErrTicketInvalid
	}
	body, err := enc.DecodeString(payload)
	if err != nil {
		return nil, ErrTicketInvalid
	}
	claims := &TicketClaims{}
	if err := json.Unmarshal(body, claims); err != nil {
		return nil, ErrTicketInvalid
	}
	if claims.Issuer != t.issuer || claims.Type != TicketType || claims.ID == "" ||
		claims.SessionID != claims.ID || !ValidID(claims.ID) || claims.Subject == "" ||
		claims.IssuedAt == nil || claims.ExpiresAt == nil {
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
