package http

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// keyRing holds the SHA-256 of each accepted secret key. Comparing fixed-size
// digests in constant time hides both a key's contents and its length.
type keyRing [][sha256.Size]byte

func newKeyRing(keys []string) keyRing {
	ring := make(keyRing, 0, len(keys))
	for _, k := range keys {
		ring = append(ring, sha256.Sum256([]byte(k)))
	}
	return ring
}

// match returns the index of the key that matches presented, or -1. It
// compares against every key, whichever matches, so timing tells nothing.
func (ring keyRing) match(presented string) int {
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range ring {
		if subtle.ConstantTimeCompare(sum[:], ring[i][:]) == 1 {
			found = i
		}
	}
	return found
}

// keyIndex returns which configured secret key authenticated the request.
func keyIndex(ctx context.Context) int {
	if st := stateOf(ctx); st != nil {
		return st.keyIndex
	}
	return 0
}

// requireKey admits requests that carry an accepted secret key as a bearer token.
func requireKey(ring keyRing) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			header := r.Header.Get("Authorization")
			if header == "" {
				writeError(w, r, errKeyInvalid)
				return
			}
			scheme, key, ok := strings.Cut(header, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" || strings.ContainsAny(key, " \t") {
				writeError(w, r, errHeaderInvalid)
				return
			}
			i := ring.match(key)
			if i < 0 {
				writeError(w, r, errKeyInvalid)
				return
			}
			if st := stateOf(r.Context()); st != nil {
				st.keyIndex = i
			}
			next.ServeHTTP(w, r)
		})
	}
}

// fingerprint names the i-th key in the audit trail: the first 8 hex digits
// of its SHA-256, which tell keys apart and reveal nothing usable of them.
func (ring keyRing) fingerprint(i int) string {
	if i < 0 || i >= len(ring) {
		return ""
	}
	return hex.EncodeToString(ring[i][:4])
}

// scope gives each request, in one context, the deadline that bounds its
// work (a database that accepts connections but never answers ends in 503
// rather than holding the request forever) and the tokens.EventContext the
// store records with the changes the request makes: the key that
// authenticated it (by fingerprint; none for the public sign-in page, ring
// nil), the client's address as the rate limiter sees it, the user agent
// and the trace id. It runs after clientIP and requireKey.
func scope(ring keyRing, timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			ec := tokens.EventContext{IP: middleware.GetClientIP(ctx), UserAgent: r.UserAgent(), TraceID: traceID(ctx)}
			if ring != nil {
				ec.Key = ring.fingerprint(keyIndex(ctx))
			}
			next.ServeHTTP(w, r.WithContext(tokens.WithEventContext(ctx, ec)))
		})
	}
}
