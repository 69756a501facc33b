package tokens

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
)

// Limits of one-time codes.
const (
	MinCodeLength          = 6
	MaxCodeLength          = 10
	DefaultCodeMaxAttempts = 5
	// MaxFinishedCodesCompared bounds how many of a user's finished coded
	// tokens (the newest) a code that matched no triable one is compared
	// with, to answer "already used" rather than "incorrect".
	MaxFinishedCodesCompared = 20
	MinCodeSecretBytes       = 32
	codeKeyIDLength          = 8 // hex characters of a code secret's fingerprint
	codeHashDomain           = "signin-tokens code hash v1\x00"
	codeDeriveDomain         = "signin-tokens code derive v1\x00"
)

// StoredCode is what the database keeps of a one-time code: a keyed hash
// (HMAC-SHA256 under a server secret), so a database dump alone cannot test
// guesses offline, and which secret made it, so secrets rotate without
// invalidating outstanding codes.
type StoredCode struct {
	Hash  []byte
	KeyID string
}

// Codes makes and checks one-time codes under a set of server secrets: the
// first hashes new codes, all check, so a secret can be replaced by putting
// the new one first and dropping the old one once its codes have expired.
type Codes struct {
	keys []codeKey
}

type codeKey struct {
	id     string
	secret []byte
}

// NewCodes returns Codes for secrets, the first of which hashes new codes.
func NewCodes(secrets ...[]byte) (*Codes, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no code secret")
	}
	c := &Codes{}
	for _, s := range secrets {
		if len(s) < MinCodeSecretBytes {
			return nil, fmt.Errorf("a code secret must be at least %d bytes", MinCodeSecretBytes)
		}
		sum := sha256.Sum256(append([]byte("signin-tokens code key id\x00"), s...))
		c.keys = append(c.keys, codeKey{id: hex.EncodeToString(sum[:])[:codeKeyIDLength], secret: s})
	}
	return c, nil
}

// New returns the one-time code of n digits for the token tokenID, and what
// is stored of it. The code is derived from the token id under the first
// secret, as a ticket is signed from its claims, so that a create retried
// under its Idempotency-Key can show the same code again; the database keeps
// only its HMAC.
func (c *Codes) New(tokenID string, n int) (string, StoredCode) {
	k := c.keys[0]
	code := deriveCode(k.secret, tokenID, n)
	return code, StoredCode{Hash: codeMAC(k.secret, tokenID, code), KeyID: k.id}
}

// Rebuild returns the code of n digits that New gave the token tokenID,
// when stored is what New stored and its secret is still configured.
func (c *Codes) Rebuild(tokenID string, n int, stored StoredCode) (string, bool) {
	k, ok := c.key(stored.KeyID)
	if !ok {
		return "", false
	}
	code := deriveCode(k.secret, tokenID, n)
	return code, hmac.Equal(codeMAC(k.secret, tokenID, code), stored.Hash)
}

// Matches reports, in constant time, whether code is the code of the token
// tokenID that stored records. A code stored under a secret no longer
// configured matches nothing.
func (c *Codes) Matches(tokenID, code string, stored StoredCode) bool {
	k, ok := c.key(stored.KeyID)
	return ok && hmac.Equal(codeMAC(k.secret, tokenID, code), stored.Hash)
}

func (c *Codes) key(id string) (codeKey, bool) {
	for _, k := range c.keys {
		if k.id == id {
			return k, true
		}
	}
	return codeKey{}, false
}

// codeMAC is what is stored of a code: bound to its token, so equal codes of
// two tokens are stored differently.
func codeMAC(secret []byte, tokenID, code string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(codeHashDomain))
	m.Write([]byte(tokenID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// deriveCode is n decimal digits from a pseudorandom function of the token
// id: 256 bits reduced modulo 10^n, whose bias (under 10^10 / 2^256) is
// nothing a guesser can use.
func deriveCode(secret []byte, tokenID string, n int) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(codeDeriveDomain))
	m.Write([]byte(tokenID))
	v := new(big.Int).SetBytes(m.Sum(nil))
	v.Mod(v, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil))
	return fmt.Sprintf("%0*s", n, v.String())
}

// validCode reports whether s has the shape of a code: 6 to 10 digits.
func validCode(s string) bool {
	if len(s) < MinCodeLength || len(s) > MaxCodeLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
