package http

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/otel/trace"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// routes is the whole API, top to bottom. Every API route is served under
// /v1 and without the prefix: the Go SDK's base URL override does not add it.
// Repeated slashes and a trailing slash are tolerated on every path.
func (s *Server) routes(cfg Config) http.Handler {
	r := chi.NewRouter()
	var tracer trace.Tracer
	if cfg.TracerProvider != nil {
		tracer = cfg.TracerProvider.Tracer(TracerName)
	}
	out := &outage{}
	r.Use(observe(cfg.Logger, cfg.Observer, tracer, out))
	r.Use(collapseSlashes) // before routing, so patterns and metrics see the clean path
	r.Use(middleware.StripSlashes)
	r.Use(limitBody(cfg.MaxBodyBytes))
	r.NotFound(handle(notFound))
	r.MethodNotAllowed(handle(methodNotAllowed(r)))

	r.Get("/healthz", handle(s.healthz))
	r.With(out.needsDatabase).Get("/readyz", handle(s.readyz))
	r.Get("/.well-known/jwks.json", handle(s.jwks))
	r.Get("/openapi.yaml", openAPIDocument)
	for path, h := range cfg.Extra {
		r.Handle(path, h)
	}

	limits := newLimiters(cfg.RateLimits)
	ring := newKeyRing(cfg.SecretKeys)
	if s.pageURL != nil {
		// The hosted sign-in page, public and limited per address as redeem is.
		r.Group(func(r chi.Router) {
			r.Use(limits.clientIP)
			r.Use(scope(nil, cfg.RequestTimeout))
			r.Use(limits.perAddress)
			r.Get("/sign-in", s.signInPage)
			r.Head("/sign-in", s.signInPage)
			r.Post("/sign-in", s.signInContinue)
		})
	}
	api := func(r chi.Router) {
		r.Use(out.needsDatabase)
		r.Use(requireKey(ring))
		r.Use(limits.clientIP)
		r.Use(scope(ring, cfg.RequestTimeout))
		r.Use(limits.perKey)
		r.Post("/sign_in_tokens", handle(s.create(tokens.KindSignIn)))
		r.Get("/sign_in_tokens", handle(s.list(tokens.KindSignIn)))
		r.Get("/sign_in_tokens/{id}", handle(s.get(tokens.KindSignIn)))
		r.Post("/sign_in_tokens/{id}/revoke", handle(s.revoke(tokens.KindSignIn)))
		r.Post("/actor_tokens", handle(s.create(tokens.KindActor)))
		r.Get("/actor_tokens", handle(s.list(tokens.KindActor)))
		r.Get("/actor_tokens/{id}", handle(s.get(tokens.KindActor)))
		r.Post("/actor_tokens/{id}/revoke", handle(s.revoke(tokens.KindActor)))
		r.Post("/users/{user_id}/sign_in_tokens/revoke", handle(s.revokeUser))
		r.With(limits.perAddress).Post("/tickets/redeem", handle(s.redeem))
		r.With(limits.perAddress).Post("/tickets/verify", handle(s.verify))
		r.Get("/events", handle(s.listEvents))
	}
	r.Route("/v1", api)
	r.Group(api)
	return r
}
