package tokens

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
)

// SigningKey is one Ed25519 key pair with its key id.
type SigningKey struct {
	ID      string // RFC 7638 JWK thumbprint of the public key
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
}

// KeySet holds the keys tickets are signed and verified with. The first key
// signs; every key verifies, so a new key can be put first while tickets
// signed by the old one stay valid until the old key is removed.
type KeySet struct {
	keys []SigningKey
	byID map[string]ed25519.PublicKey
}

// NewKeySet builds a key set from private keys, the first being the signer.
func NewKeySet(privs ...ed25519.PrivateKey) (*KeySet, error) {
	if len(privs) == 0 {
		return nil, errors.New("a key set needs at least one key")
	}
	ks := &KeySet{byID: make(map[string]ed25519.PublicKey, len(privs))}
	for i, p := range privs {
		if len(p) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("key %d is not an Ed25519 private key", i+1)
		}
		pub := p.Public().(ed25519.PublicKey)
		k := SigningKey{ID: Thumbprint(pub), Private: p, Public: pub}
		if _, dup := ks.byID[k.ID]; dup {
			continue
		}
		ks.keys = append(ks.keys, k)
		ks.byID[k.ID] = pub
	}
	return ks, nil
}

// Signer returns the key that signs new tickets.
func (ks *KeySet) Signer() SigningKey { return ks.keys[0] }

// Keys returns every key of the set, the signer first.
func (ks *KeySet) Keys() []SigningKey { return ks.keys }

// Public returns the verification key with the given id.
func (ks *KeySet) Public(kid string) (ed25519.PublicKey, bool) {
	k, ok := ks.byID[kid]
	return k, ok
}

// Thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key, used as kid.
func Thumbprint(pub ed25519.PublicKey) string {
	// Members in lexicographic order, no whitespace, as RFC 7638 requires.
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWK is one public key in a JSON Web Key Set.
type JWK struct {
	KeyType   string `json:"kty"`
	Curve     string `json:"crv"`
	X         string `json:"x"`
	KeyID     string `json:"kid"`
	Algorithm string `json:"alg"`
	Use       string `json:"use"`
}

// JWKS returns the public keys of the set as JWKs, the signer first.
func (ks *KeySet) JWKS() []JWK {
	out := make([]JWK, 0, len(ks.keys))
	for _, k := range ks.keys {
		out = append(out, JWK{KeyType: "OKP", Curve: "Ed25519",
			X: base64.RawURLEncoding.EncodeToString(k.Public), KeyID: k.ID, Algorithm: "EdDSA", Use: "sig"})
	}
	return out
}

// GenerateKey returns a new Ed25519 private key.
func GenerateKey() ed25519.PrivateKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("tokens: no randomness: " + err.Error())
	}
	return priv
}

// EncodePEM encodes private keys as consecutive PKCS#8 "PRIVATE KEY" PEM blocks.
func EncodePEM(privs ...ed25519.PrivateKey) ([]byte, error) {
	var out []byte
	for _, p := range privs {
		der, err := x509.MarshalPKCS8PrivateKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	}
	return out, nil
}

// ParsePEM reads one or more PKCS#8 Ed25519 private keys from PEM data, in order.
func ParsePEM(data []byte) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("PEM block %d is %q, want \"PRIVATE KEY\" (PKCS#8)", n, block.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		ed, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d is a %T, want an Ed25519 key", n, k)
		}
		keys = append(keys, ed)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block found")
	}
	return keys, nil
}
