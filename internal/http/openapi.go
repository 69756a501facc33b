package http

import (
	"net/http"

	"github.com/signin-tokens/signin-tokens/api"
)

// openAPIDocument serves the OpenAPI document of this API; the HTTP tests
// validate every request and response against it, so it cannot drift.
func openAPIDocument(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"application/yaml"}
	h["Cache-Control"] = []string{"public, max-age=300"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.Write(api.OpenAPI)
}
