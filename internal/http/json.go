package http

import (
	"encoding/json"
	"net/http"
)

// Header values every JSON response carries; shared, never modified.
var (
	contentTypeJSON = []string{"application/json"}
	noSniff         = []string{"nosniff"}
	noStore         = []string{"no-store"}
)

// writeJSON writes v with the exact Content-Type the SDKs compare against.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var body []byte
	if a, ok := v.(jsonAppender); ok {
		buf := bodyBuffers.Get().(*[]byte)
		defer bodyBuffers.Put(buf)
		*buf = a.appendJSON((*buf)[:0])
		body = *buf
	} else {
		var err error
		if body, err = json.Marshal(v); err != nil {
			// Only our own response types are marshalled; they always encode.
			panic("http: cannot encode response: " + err.Error())
		}
	}
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["X-Content-Type-Options"] = noSniff
	if _, set := h["Cache-Control"]; !set {
		h["Cache-Control"] = noStore
	}
	w.WriteHeader(status)
	w.Write(body)
}
