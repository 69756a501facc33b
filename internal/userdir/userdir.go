// Package userdir asks an application's user directory over HTTP whether a
// user exists, so tickets are only issued for real users.
package userdir

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Placeholder is replaced by the path-escaped user id in the lookup URL.
const Placeholder = "{user_id}"

// Directory is an HTTP user directory: GET on the URL template with the user
// id substituted; 2xx means the user exists and 404 that it does not.
type Directory struct {
	template      string
	authorization string
	client        *http.Client
}

// New returns a Directory for a URL template containing Placeholder.
// authorization, when not empty, is sent as the Authorization header.
func New(template, authorization string) (*Directory, error) {
	if !strings.Contains(template, Placeholder) {
		return nil, fmt.Errorf("the URL must contain %s", Placeholder)
	}
	u, err := url.Parse(strings.ReplaceAll(template, Placeholder, "x"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the URL must be an absolute http or https URL")
	}
	return &Directory{template: template, authorization: authorization,
		client: &http.Client{Timeout: 5 * time.Second}}, nil
}

// UserExists reports whether the directory knows userID.
func (d *Directory) UserExists(ctx context.Context, userID string) (bool, error) {
	target := strings.ReplaceAll(d.template, Placeholder, url.PathEscape(userID))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "application/json")
	if d.authorization != "" {
		req.Header.Set("Authorization", d.authorization)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("user directory: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return true, nil
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("user directory answered %s", resp.Status)
}
