// Package http serves the sign-in token API over HTTP: routing,
// authentication, request decoding and the one error renderer.
package http

import (
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/httprate"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBodyBytes   = 64 << 10
	DefaultRequestTimeout = 10 * time.Second
)

// Config configures the HTTP API.
type Config struct {
	Service    *tokens.Service
	SecretKeys []string // accepted admin keys; several at once so keys can rotate
	SignInURL  *url.URL // sign-in page the url field points at; nil leaves url out
	// PublicURL is the service's own public base URL; set, the url field
	// points at its hosted sign-in page, /sign-in, which is then served.
	PublicURL *url.URL
	// PageObserver, optional, is told of every view and continue of the
	// hosted sign-in page, with nil or the error the ticket was refused with.
	PageObserver PageObserver
	Logger       zerolog.Logger
	MaxBodyBytes int64 // 0 means DefaultMaxBodyBytes
	// RequestTimeout bounds each API request's work, database calls
	// included; past it the request answers 503. 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	Observer       RequestObserver // optional, told of every request
	RateLimits     RateLimits
	// Extra routes mounted beside the API without authentication, such as
	// /metrics; nil for none.
	Extra map[string]http.Handler
	// TracerProvider, when set, gives every request a server span; nil
	// (tracing off) creates none and keeps the random trace ids.
	TracerProvider trace.TracerProvider
}

// Server is the HTTP API.
type Server struct {
	service      *tokens.Service
	signInURL    *url.URL
	publicURL    *url.URL
	pageURL      *url.URL // publicURL's /sign-in
	pageObserver PageObserver
	codeLimit    *httprate.RateLimiter // per user, on redemptions by code; nil: off
	handler      http.Handler
}

// NewServer returns the API for cfg.
func NewServer(cfg Config) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	s := &Server{service: cfg.Service, signInURL: cfg.SignInURL, publicURL: cfg.PublicURL, pageObserver: cfg.PageObserver}
	if s.pageObserver == nil {
		s.pageObserver = func(string, error) {}
	}
	if n := cfg.RateLimits.CodePerUser; n > 0 {
		s.codeLimit = httprate.NewRateLimiter(n, time.Minute)
	}
	if s.publicURL != nil {
		s.pageURL = s.publicURL.JoinPath("sign-in")
	}
	s.handler = s.routes(cfg)
	return s
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// handlerFunc is a handler that returns its error for writeError to render.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, err)
		}
	}
}

// NewHTTPServer wraps h in a server with timeouts suited to a small JSON API.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
}
