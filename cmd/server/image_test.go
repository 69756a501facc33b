package main_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// These tests run what the container image runs, without a Docker engine:
// the binary built by the Dockerfile's own build command, its subcommands,
// and its health check against a running server and against nothing.

const imageVersion = "v9.8.7-imagetest"

// dockerfile is the repository's Dockerfile, one instruction a line with
// continuation lines joined.
type dockerfile []string

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out dockerfile
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// find returns the arguments of every instruction named name.
func (d dockerfile) find(name string) []string {
	var out []string
	for _, in := range d {
		if kw, rest, ok := strings.Cut(in, " "); ok && strings.EqualFold(kw, name) {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

// shellWords splits a command line as sh does for the simple forms the
// Dockerfile uses: blanks separate words, double quotes group them.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case (r == ' ' || r == '\t') && !inQuote:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// buildAsDockerfile builds the server into a temporary directory exactly as
// the Dockerfile's build stage does, with VERSION set to imageVersion, and
// returns the binary and the command line used.
func buildAsDockerfile(t *testing.T) (bin string, command []string) {
	t.Helper()
	var line string
	for _, run := range readDockerfile(t).find("RUN") {
		if strings.Contains(run, "go build") {
			line = run
		}
	}
	if line == "" {
		t.Fatal("Dockerfile: no RUN ... go build line")
	}
	words := shellWords(strings.NewReplacer("${VERSION}", imageVersion, "$VERSION", imageVersion).Replace(line))
	var env []string
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	bin = filepath.Join(t.TempDir(), "server")
	for i := range words {
		if words[i] == "-o" && i+1 < len(words) {
			words[i+1] = bin
		}
	}
	cmd := exec.Command(words[0], words[1:]...)
	cmd.Dir = buildContext(t)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return bin, append(env, words...)
}

// buildContext copies the repository into a temporary directory as docker
// build would send it, without what .dockerignore excludes, so the build
// proves the context holds everything the binary needs.
func buildContext(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not supported by this test's matcher", line)
		}
		patterns = append(patterns, strings.TrimSuffix(line, "/"))
	}
	root, dst := "../..", t.TempDir()
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		if dockerignored(filepath.ToSlash(rel), patterns) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(rel, ".pem") || strings.Contains(filepath.ToSlash(rel), "deploy/secrets/") {
			t.Errorf("build context: %s would be sent to the builder; keys must stay out of images", rel)
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), content, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// dockerignored matches a slash-separated path, or any folder above it,
// against .dockerignore patterns: filepath.Match from the context root, and
// a leading **/ for any depth.
func dockerignored(rel string, patterns []string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		for _, p := range patterns {
			if rest, anyDepth := strings.CutPrefix(p, "**/"); anyDepth {
				for j := 0; j < i; j++ {
					if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
						return true
					}
				}
			} else if ok, _ := filepath.Match(p, prefix); ok {
				return true
			}
		}
	}
	return false
}

// TestImage runs what the container image runs.
func TestImage(t *testing.T) {
	bin, command := buildAsDockerfile(t)
	t.Run("static binary", func(t *testing.T) { checkStaticBinary(t, bin, command) })
	t.Run("subcommands help", func(t *testing.T) { checkSubcommandsHelp(t, bin) })
	t.Run("read-only root filesystem", func(t *testing.T) { checkRunsReadOnly(t, bin) })
}

// runBinary runs the binary with only env as its environment and returns
// its exit code and output.
func runBinary(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{}, env...) // never nil: nil would inherit the test's environment
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v", bin, args, err)
		}
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// checkStaticBinary checks what the build stage produces: a static,
// stripped, version-stamped binary without the build machine's paths.
func checkStaticBinary(t *testing.T, bin string, command []string) {
	if got := strings.Join(command, " "); !strings.HasPrefix(got, "CGO_ENABLED=0 go build -trimpath -ldflags -s -w -X main.version="+imageVersion) {
		t.Errorf("Dockerfile build command: got %q, want CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w -X main.version=$VERSION\" ...", got)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v: the binary is dynamically linked; want a static binary for an empty (scratch) image", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("imported libraries: got %v, want none", libs)
	}
	for _, name := range []string{".symtab", ".debug_info", ".zdebug_info"} {
		if f.Section(name) != nil {
			t.Errorf("section %s present; want it stripped by -s -w", name)
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	if bytes.Contains(data, []byte(root+"/")) {
		t.Errorf("the binary holds the build path %s; want -trimpath", root)
	}

	code, out, _ := runBinary(t, bin, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "signin-tokens "+imageVersion+" ") {
		t.Errorf("version: exit %d, output %q; want signin-tokens %s ...", code, out, imageVersion)
	}
}

// checkSubcommandsHelp runs -h of the binary and of every subcommand it
// lists: each exits 0 and says how to use it.
func checkSubcommandsHelp(t *testing.T, bin string) {
	code, _, usage := runBinary(t, bin, nil, "-h")
	if code != 0 {
		t.Fatalf("-h: exit %d\n%s", code, usage)
	}
	var names []string
	inList := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "Subcommands:"):
			inList = true
		case inList && strings.HasPrefix(line, "  "):
			names = append(names, strings.Fields(line)[0])
		case inList:
			inList = false
		}
	}
	want := []string{"serve", "migrate", "keygen", "healthcheck", "version"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("subcommands listed by -h: got %v, want %v", names, want)
	}
	for _, name := range names {
		code, stdout, stderr := runBinary(t, bin, nil, name, "-h")
		if code != 0 || !strings.Contains(stderr, "Usage: server "+name) {
			t.Errorf("%s -h: exit %d, stderr %q, stdout %q; want exit 0 and its usage", name, code, stderr, stdout)
		}
	}
	code, _, stderr := runBinary(t, bin, nil, "no-such-subcommand")
	if code == 0 || !strings.Contains(stderr, `unknown subcommand "no-such-subcommand"`) {
		t.Errorf("unknown subcommand: exit %d, stderr %q; want a failure naming it", code, stderr)
	}
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// checkRunsReadOnly runs the image's commands as a production container
// would, keys from configuration and PostgreSQL for storage: keygen writes
// the signing key, migrate prepares the database, the health check fails
// while nothing listens and passes once serve is up, and the server writes
// nothing to DATA_DIR, so a read-only root filesystem is enough.
func checkRunsReadOnly(t *testing.T, bin string) {
	dbURL := pgtest.URL(t)
	dir := t.TempDir()

	code, pem, stderr := runBinary(t, bin, nil, "keygen")
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	if keys, err := tokens.ParsePEM([]byte(pem)); err != nil || len(keys) != 1 {
		t.Fatalf("keygen output: %d keys, %v; want one Ed25519 PKCS#8 key", len(keys), err)
	}
	keyFile := filepath.Join(dir, "signing.pem")
	if err := os.WriteFile(keyFile, []byte(pem), 0o400); err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	dataDir := filepath.Join(dir, "data-never-written")
	env := []string{
		"HTTP_ADDR=" + addr,
		"DATA_DIR=" + dataDir,
		"DATABASE_URL=" + dbURL,
		"SECRET_KEYS=sk_live_image_test_0123456789",
		"SIGNING_KEY_FILE=" + keyFile,
		"LOG_FORMAT=console",
		"SHUTDOWN_TIMEOUT=5s",
	}

	if code, _, stderr := runBinary(t, bin, env, "healthcheck", "-timeout", "1s"); code == 0 {
		t.Errorf("healthcheck with no server: exit 0, want a failure (%s)", stderr)
	}
	if code, out, stderr := runBinary(t, bin, env, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, stderr)
	}

	srv := exec.Command(bin, "serve")
	srv.Env = env
	logs := &syncBuffer{}
	srv.Stdout, srv.Stderr = logs, logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		if srv.ProcessState == nil {
			srv.Process.Kill()
			<-exited
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, _ := runBinary(t, bin, env, "healthcheck", "-timeout", "1s")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never passed; server output:\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Live comes first; ready follows once the database is connected, which
	// the server does in the background.
	for {
		code, out, stderr := runBinary(t, bin, env, "healthcheck", "-ready")
		if code == 0 && strings.TrimSpace(out) == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck -ready: exit %d, %q %q; want 0 and ok", code, out, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The routes the image's users scrape and read.
	for path, want := range map[string]*regexp.Regexp{
		"/metrics":      regexp.MustCompile(`(?m)^signin_tokens_db_connections_max [1-9]`),
		"/openapi.yaml": regexp.MustCompile(`(?m)^openapi: 3\.1\.0$`),
		"/readyz":       regexp.MustCompile(`^\{"status":"ready"\}$`),
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !want.Match(body) {
			t.Errorf("GET %s: %s, body %.300q; want 200 matching %s", path, resp.Status, body, want)
		}
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v; want exit 0\n%s", err, logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop after SIGTERM\n%s", logs)
	}

	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("DATA_DIR %s: %v; want it never created when keys and database are configured", dataDir, err)
	}
	// LOG_FORMAT=console: lines for people, not JSON objects.
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	listening := false
	for sc.Scan() {
		line := sc.Text()
		if json.Valid([]byte(line)) {
			t.Errorf("LOG_FORMAT=console printed a JSON line: %s", line)
		}
		if strings.Contains(line, "INF") && strings.Contains(line, "listening") {
			listening = true
		}
	}
	if !listening {
		t.Errorf("console log: no INF ... listening line in\n%s", logs)
	}
}

// syncBuffer is a bytes.Buffer safe for the process's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
