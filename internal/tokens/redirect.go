package tokens

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxRedirectURLBytes is the longest redirect_url accepted.
const MaxRedirectURLBytes = 2048

// RedirectPolicy decides which redirect_url values a token may carry: those
// that start with one of the allowed prefixes once scheme and host are
// normalised. The zero policy allows none.
//
// A URL is compared only in a form with one reading: an absolute http(s) URL
// with an ASCII host, no userinfo, no backslash, no control character or
// space, no dot segment and no percent-encoded '/', '\' or '.' in its path.
// Anything else is refused rather than guessed at, since browsers and
// servers disagree on how to read it.
type RedirectPolicy struct {
	allowed []redirectPrefix
}

// redirectPrefix is an allowed prefix in normalised form.
type redirectPrefix struct {
	origin string // scheme://host[:port], lower case, default port dropped
	path   string // "" or "/" allows every path
}

// NewRedirectPolicy returns the policy allowing prefixes, each an absolute
// http(s) URL without query or fragment, such as https://app.example.com/auth.
func NewRedirectPolicy(prefixes []string) (RedirectPolicy, error) {
	var p RedirectPolicy
	for _, raw := range prefixes {
		u, err := parseRedirect(raw)
		if err != nil {
			return RedirectPolicy{}, fmt.Errorf("%q: %w", raw, err)
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
			return RedirectPolicy{}, fmt.Errorf("%q: a prefix has no query or fragment", raw)
		}
		p.allowed = append(p.allowed, redirectPrefix{origin: u.Scheme + "://" + u.Host, path: u.EscapedPath()})
	}
	return p, nil
}

// Check returns raw in normalised form (scheme and host in lower case,
// default port dropped) when it is allowed, and a form_param_value_invalid
// error for redirect_url otherwise.
func (p RedirectPolicy) Check(raw string) (string, error) {
	if len(raw) > MaxRedirectURLBytes {
		return "", ParamValueInvalid("redirect_url", fmt.Sprintf("must be at most %d bytes.", MaxRedirectURLBytes))
	}
	u, err := parseRedirect(raw)
	if err != nil {
		return "", ParamValueInvalid("redirect_url", err.Error())
	}
	if len(p.allowed) == 0 {
		return "", ParamValueInvalid("redirect_url", "no redirect URLs are allowed (ALLOWED_REDIRECT_URLS is empty).")
	}
	origin, path := u.Scheme+"://"+u.Host, u.EscapedPath()
	for _, a := range p.allowed {
		if origin == a.origin && pathUnder(path, a.path) {
			return u.String(), nil
		}
	}
	return "", ParamValueInvalid("redirect_url", "must start with one of the allowed redirect URLs (ALLOWED_REDIRECT_URLS).")
}

// pathUnder reports whether path is prefix or lies below it, at a segment
// boundary: /app allows /app and /app/x, never /application.
func pathUnder(path, prefix string) bool {
	if prefix == "" || prefix == "/" || path == prefix {
		return true
	}
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix)
	}
	return strings.HasPrefix(path, prefix+"/")
}

// parseRedirect reads raw as an absolute http(s) URL with a single reading,
// normalising scheme and host.
func parseRedirect(raw string) (*url.URL, error) {
	for _, c := range []byte(raw) {
		if c <= ' ' || c == 0x7f || c == '\\' {
			return nil, errors.New("must not contain spaces, control characters or backslashes.")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("must be an absolute URL.")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must be an absolute http or https URL.")
	case u.Opaque != "" || u.Host == "" || !strings.HasPrefix(raw[len(u.Scheme)+1:], "//"):
		return nil, errors.New("must be an absolute http or https URL with a host.")
	case u.User != nil:
		return nil, errors.New("must not contain a user name or password.")
	}
	host := strings.ToLower(u.Hostname())
	for _, c := range []byte(host) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return nil, errors.New("must have a host of ASCII letters, digits, '-' and '.' (an international name in its xn-- form).")
		}
	}
	if host == "" || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return nil, errors.New("must have a host name.")
	}
	port := u.Port()
	if u.Scheme == "http" && port == "80" || u.Scheme == "https" && port == "443" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	u.Host = host
	if port != "" {
		u.Host += ":" + port
	}
	path := u.EscapedPath()
	lower := strings.ToLower(path)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%2e") {
		return nil, errors.New("must not percent-encode '/', '\\' or '.' in its path.")
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return nil, errors.New("must not contain . or .. path segments.")
		}
	}
	return u, nil
}
