package http

import (
	"encoding/json"
	"net/http"
)

// writeJSON writes v with the exact Content-Type the SDKs compare against.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own response types are marshalled; they always encode.
		panic("http: cannot encode response: " + err.Error())
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	if _, set := h["Cache-Control"]; !set {
		h["Cache-Control"] = []string{"no-store"}
	}
	w.WriteHeader(status)
	w.Write(body)
}
