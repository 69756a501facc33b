package http

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// routes is the whole API, top to bottom. Every API route is served under
// /v1 and without the prefix: the Go SDK's base URL override does not add it.
// Repeated slashes and a trailing slash are tolerated on every path.
func (s *Server) routes(cfg Config) http.Handler {
	r := chi.NewRouter()
	out := &outage{}
	r.Use(observe(cfg.Logger, cfg.Observer, out))
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
	api := func(r chi.Router) {
		r.Use(out.needsDatabase)
		r.Use(requireKey(newKeyRing(cfg.SecretKeys)))
		r.Use(deadline(cfg.RequestTimeout))
		r.Use(limits.perKey)
		r.Post("/sign_in_tokens", handle(s.create))
		r.Get("/sign_in_tokens", handle(s.list))
		r.Get("/sign_in_tokens/{id}", handle(s.get))
		r.Post("/sign_in_tokens/{id}/revoke", handle(s.revoke))
		r.Post("/users/{user_id}/sign_in_tokens/revoke", handle(s.revokeUser))
		r.With(limits.perAddress).Post("/tickets/redeem", handle(s.redeem))
	}
	r.Route("/v1", api)
	r.Group(api)
	return r
}
