package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix begins every secret, as in the Standard Webhooks specification.
const SecretPrefix = "whsec_"

// Bounds of a decoded secret, as the specification recommends.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// Secret is a decoded signing secret. Its String form never shows it.
type Secret struct{ key []byte }

// String hides the secret, so that a log of a Config cannot leak it.
func (Secret) String() string { return SecretPrefix + "…" }

// ParseSecret decodes "whsec_" followed by the standard base64 of 24 to 64
// bytes. Its errors never repeat the value.
func ParseSecret(s string) (Secret, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Secret{}, fmt.Errorf("must start with %s", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return Secret{}, errors.New("must be " + SecretPrefix + " followed by standard base64")
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return Secret{}, fmt.Errorf("must decode to %d to %d bytes, got %d", MinSecretBytes, MaxSecretBytes, len(key))
	}
	return Secret{key: key}, nil
}

// Signer signs deliveries with one or more secrets.
type Signer struct{ secrets []Secret }

// NewSigner signs with every secret given: a receiver that knows any one of
// them verifies, so a secret is rotated by adding the new one, moving
// receivers over, then removing the old one.
func NewSigner(secrets ...Secret) (Signer, error) {
	if len(secrets) == 0 {
		return Signer{}, errors.New("no secret")
	}
	return Signer{secrets: secrets}, nil
}

// Signature is the webhook-signature header for the message id sent at ts
// with body: "v1," and the base64 HMAC-SHA256 of "id.timestamp.body" under
// each secret, separated by spaces.
func (s Signer) Signature(id string, ts time.Time, body []byte) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	sigs := make([]string, len(s.secrets))
	for i, secret := range s.secrets {
		mac := hmac.New(sha256.New, secret.key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(unix))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return strings.Join(sigs, " ")
}
