package tokens

import (
	"errors"
	"testing"
)

// TestRedirectPolicy holds the allow-list to the classic tricks: each URL is
// either refused, or accepted in the normalised form given.
func TestRedirectPolicy(t *testing.T) {
	policy, err := NewRedirectPolicy([]string{"https://app.example.com/app", "http://localhost:3000/", "https://xn--bcher-kva.example/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, url, want string // want "" means refused
	}{
		{"exact prefix", "https://app.example.com/app", "https://app.example.com/app"},
		{"below the prefix", "https://app.example.com/app/callback?next=%2Fbilling#top", "https://app.example.com/app/callback?next=%2Fbilling#top"},
		{"path boundary", "https://app.example.com/application", ""},
		{"path boundary, encoded", "https://app.example.com/app%2Fx", ""},
		{"outside the path", "https://app.example.com/admin", ""},
		{"uppercase scheme and host", "HTTPS://APP.Example.COM/app/x", "https://app.example.com/app/x"},
		{"default port", "https://app.example.com:443/app/x", "https://app.example.com/app/x"},
		{"other port", "https://app.example.com:8443/app/x", ""},
		{"http default port", "http://localhost:80/", ""},
		{"allowed port", "http://localhost:3000/anything", "http://localhost:3000/anything"},
		{"other scheme", "http://app.example.com/app", ""},
		{"userinfo @", "https://app.example.com@evil.com/app", ""},
		{"userinfo before the real host", "https://evil.com@app.example.com/app", ""},
		{"userinfo with password", "https://user:pass@app.example.com/app", ""},
		{"look-alike suffix", "https://app.example.com.evil.com/app", ""},
		{"look-alike without dot", "https://appexample.com/app", ""},
		{"look-alike prefix", "https://evilapp.example.com/app", ""},
		{"trailing dot host", "https://app.example.com./app", ""},
		{"scheme-relative", "//app.example.com/app", ""},
		{"path only", "/app/callback", ""},
		{"backslash host", "https://app.example.com\\@evil.com/app", ""},
		{"backslashes for slashes", "https:\\\\evil.com\\app", ""},
		{"backslash in path", "https://app.example.com/app\\..\\admin", ""},
		{"javascript", "javascript:alert(1)", ""},
		{"javascript with slashes", "javascript://app.example.com/app%0Aalert(1)", ""},
		{"data", "data:text/html,<script>alert(1)</script>", ""},
		{"opaque https", "https:app.example.com/app", ""},
		{"one slash", "https:/app.example.com/app", ""},
		{"dot segments", "https://app.example.com/app/../admin", ""},
		{"encoded dot segments", "https://app.example.com/app/%2e%2e/admin", ""},
		{"encoded dot segments, upper", "https://app.example.com/app/%2E%2E/admin", ""},
		{"encoded slash", "https://app.example.com/app%2f..%2fadmin", ""},
		{"encoded backslash", "https://app.example.com/app/%5c..%5cadmin", ""},
		{"encoded host", "https://app%2eexample.com/app", ""},
		{"encoded @ in host", "https://evil.com%40app.example.com/app", ""},
		{"IDN look-alike, Cyrillic a", "https://\u0430pp.example.com/app", ""},
		{"IDN look-alike, punycode", "https://xn--pp-8cd.example.com/app", ""},
		{"IDN allowed in punycode", "https://XN--BCHER-KVA.example/x", "https://xn--bcher-kva.example/x"},
		{"IDN allowed, Unicode form", "https://b\u00fccher.example/x", ""},
		{"whitespace", " https://app.example.com/app", ""},
		{"tab inside", "https://app.example.com/app\t/x", ""},
		{"newline", "https://app.example.com/app\n", ""},
		{"NUL", "https://app.example.com/app\x00", ""},
		{"empty host", "https:///app", ""},
		{"IPv6 literal", "https://[::1]/app", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := policy.Check(c.url)
			if c.want == "" {
				if err == nil {
					t.Fatalf("Check(%q) = %q, want refused", c.url, got)
				}
				if !errors.Is(err, ParamValueInvalid("redirect_url", "")) {
					t.Fatalf("Check(%q): error %v, want form_param_value_invalid for redirect_url", c.url, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Check(%q) = %q, %v; want %q", c.url, got, err, c.want)
			}
		})
	}
}

// TestRedirectPolicyEmpty: with nothing configured, every redirect_url is
// refused, never silently dropped.
func TestRedirectPolicyEmpty(t *testing.T) {
	if got, err := (RedirectPolicy{}).Check("https://app.example.com/"); err == nil {
		t.Fatalf("Check with no prefixes = %q, want refused", got)
	}
}

// TestNewRedirectPolicyRefuses: a prefix must be an absolute http(s) URL
// with one reading, without query or fragment.
func TestNewRedirectPolicyRefuses(t *testing.T) {
	for _, p := range []string{"app.example.com", "//app.example.com", "javascript:alert(1)", "https://u@app.example.com",
		"https://app.example.com/?a=1", "https://app.example.com/#x", "https://app.example.com/a/../b", "ftp://app.example.com"} {
		if _, err := NewRedirectPolicy([]string{p}); err == nil {
			t.Errorf("NewRedirectPolicy(%q): accepted, want an error", p)
		}
	}
	if _, err := NewRedirectPolicy([]string{"HTTPS://App.Example.com:443"}); err != nil {
		t.Errorf("NewRedirectPolicy of an upper-case prefix with its default port: %v", err)
	}
}
