package http

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"
)

// RateLimits caps request rates per minute; zero turns a limit off.
type RateLimits struct {
	// RedeemPerAddress caps redemptions per client address, so a leaked
	// secret key cannot be used to guess tickets quickly.
	RedeemPerAddress int
	// AdminPerKey caps admin requests per secret key.
	AdminPerKey int
	// CodePerUser caps redemptions by one-time code per user_id, in each
	// replica; the database caps wrong codes per token across all of them.
	CodePerUser int
	// TrustedProxies are CIDR prefixes whose X-Forwarded-For is believed when
	// finding the client address; empty means the peer address is the client.
	TrustedProxies []string
}

type limiters struct {
	perKey     func(http.Handler) http.Handler
	perAddress func(http.Handler) http.Handler
	// clientIP finds the client's address, for the limits and for the
	// audit trail alike: the peer's, or with TrustedProxies, the address
	// X-Forwarded-For gives (middleware.GetClientIP reads it).
	clientIP func(http.Handler) http.Handler
}

func passThrough(next http.Handler) http.Handler { return next }

func newLimiters(cfg RateLimits) limiters {
	l := limiters{perKey: passThrough, perAddress: passThrough, clientIP: middleware.ClientIPFromRemoteAddr}
	if len(cfg.TrustedProxies) > 0 {
		l.clientIP = middleware.ClientIPFromXFF(cfg.TrustedProxies...)
	}
	onLimit := httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errTooManyRequests)
	})
	if cfg.AdminPerKey > 0 {
		l.perKey = httprate.LimitBy(cfg.AdminPerKey, time.Minute, func(r *http.Request) (string, error) {
			return "key:" + strconv.Itoa(keyIndex(r.Context())), nil
		}, onLimit)
	}
	if cfg.RedeemPerAddress > 0 {
		limit := httprate.LimitBy(cfg.RedeemPerAddress, time.Minute, func(r *http.Request) (string, error) {
			return "addr:" + httprate.CanonicalizeIP(middleware.GetClientIP(r.Context())), nil
		}, onLimit)
		l.perAddress = limit // behind clientIP, which every route group uses
	}
	return l
}
