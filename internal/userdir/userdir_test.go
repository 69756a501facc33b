package userdir_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/userdir"
)

func TestNewRefusesBadTemplates(t *testing.T) {
	for _, tmpl := range []string{"https://users.example.com/users", "/users/{user_id}", "ftp://x/{user_id}", "https:///{user_id}"} {
		if _, err := userdir.New(tmpl, ""); err == nil {
			t.Errorf("New(%q): got no error", tmpl)
		}
	}
}

func TestUserExists(t *testing.T) {
	var gotPath, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.EscapedPath(), r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/users/known", "/users/a/b":
			w.WriteHeader(http.StatusOK)
		case "/users/broken":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	dir, err := userdir.New(srv.URL+"/users/{user_id}", "Bearer dir-key")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		user     string
		want     bool
		wantErr  bool
		wantPath string
	}{
		{"known", true, false, "/users/known"},
		{"unknown", false, false, "/users/unknown"},
		{"broken", false, true, "/users/broken"},
		{"a/b", true, false, "/users/a%2Fb"}, // escaped: the id cannot walk the directory's paths
		{"../admin", false, false, "/users/..%2Fadmin"},
	}
	for _, tc := range cases {
		got, err := dir.UserExists(context.Background(), tc.user)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("UserExists(%q): got %v, %v; want %v, error %v", tc.user, got, err, tc.want, tc.wantErr)
		}
		if gotPath != tc.wantPath || gotAuth != "Bearer dir-key" {
			t.Errorf("UserExists(%q): request %s with Authorization %q; want %s", tc.user, gotPath, gotAuth, tc.wantPath)
		}
	}
}
