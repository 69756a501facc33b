package http

import "testing"

// BenchmarkParseBody reads the bodies requests send: a redeem's, a create's,
// and a create's with nested metadata (which the flat reader takes as well).
func BenchmarkParseBody(b *testing.B) {
	for _, c := range []struct{ name, body string }{
		{"redeem", `{"ticket":"eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1c2VyXzEyMyJ9.c2lnbmF0dXJl"}`},
		{"create", `{"user_id":"user_123","org_id":"org_1","redirect_url":"https://app.example.com/auth/callback"}`},
		{"create_metadata", `{"user_id":"user_123","redirect_url":"https://app.example.com/auth/callback","metadata":{"locale":"de-CH","next":"/billing","flags":[1,2,3],"ab":{"variant":"b"}}}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			b.ReportAllocs()
			for b.Loop() {
				fields, ok := parseFlatObject(body)
				if !ok || len(fields) == 0 {
					b.Fatalf("parseFlatObject(%s) refused it", body)
				}
			}
		})
	}
}
