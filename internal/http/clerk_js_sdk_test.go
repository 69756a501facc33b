package http_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestClerkJSSDK runs compat/js/sdk.test.mjs, which drives the real router
// with Clerk's JavaScript Backend SDK (@clerk/backend) given only our base URL.
// It needs node and `npm ci --prefix compat/js`, which make test runs when
// compat/js/node_modules is missing.
func TestClerkJSSDK(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(filepath.Join("..", "..", "compat", "js"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(dir, "node_modules", "@clerk", "backend"))
	if err != nil || modErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node (%v) or compat/js/node_modules (%v) missing; run npm ci --prefix compat/js", err, modErr)
		}
		t.Skip("node or compat/js/node_modules missing; run npm ci --prefix compat/js")
	}
	b := setup(t)
	cmd := exec.Command(node, "--test", "sdk.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL="+b.srv.URL, "SECRET_KEY="+testKey)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the JavaScript SDK tests failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
