package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawOutput is a program's standard output, line by line, as written.
type rawOutput struct {
	mu    sync.Mutex
	lines []string
}

func (o *rawOutput) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		o.mu.Lock()
		o.lines = append(o.lines, strings.TrimRight(sc.Text(), "\r"))
		o.mu.Unlock()
	}
}

// find returns the first line for which match holds, or "".
func (o *rawOutput) find(match func(string) bool) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.lines {
		if match(l) {
			return l
		}
	}
	return ""
}

func (o *rawOutput) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.lines...)
}

// startWithOutput runs the program with env and its standard output written
// to stdout, as it is, until the test ends, and waits until it answers
// /healthz. It returns the program's base URL.
func startWithOutput(t *testing.T, env map[string]string, stdout io.Writer) (base string) {
	t.Helper()
	env["HTTP_ADDR"] = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"server"}, func(k string) string { return env[k] }, stdout, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("program did not stop within 30s")
		}
	})
	base = "http://" + env["HTTP_ADDR"]
	waitFor(t, 30*time.Second, "the program to answer /healthz", func() bool {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("program exited: %v", err)
		default:
		}
		r, err := send(base, "GET", "/healthz", "", "")
		return err == nil && r.status == 200
	})
	testClient.CloseIdleConnections()
	return base
}

// pastes runs line as a shell would after a copy and paste, and checks that
// it created a sign-in token.
func pastes(t *testing.T, line string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed; cannot paste the line")
	}
	out, err := exec.Command("sh", "-c", line).CombinedOutput()
	var tok map[string]any
	if err != nil || json.Unmarshal(out, &tok) != nil || tok["object"] != "sign_in_token" || tok["user_id"] != "user_123" {
		t.Errorf("the curl line, pasted into sh: %v, output %q; want a sign_in_token for user_123\nline: %s", err, out, line)
	}
}

// TestDevKeyCurlLinePastes: the curl line printed with a generated dev key
// runs as it is. In JSON logs it is a field of the announcement; in console
// logs it is a line of its own, unquoted, right after the announcement.
func TestDevKeyCurlLinePastes(t *testing.T) {
	t.Parallel()
	const announcement = "using a generated development secret key"
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe()
			out := &rawOutput{}
			go out.read(pr)
			t.Cleanup(func() { pw.Close() })
			startWithOutput(t, map[string]string{"DATA_DIR": t.TempDir(), "LOG_FORMAT": format}, pw)
			var curl string
			waitFor(t, 5*time.Second, "the announcement", func() bool {
				return out.find(func(l string) bool { return strings.Contains(l, announcement) }) != ""
			})
			lines := out.all()
			switch format {
			case "json":
				for _, l := range lines {
					var entry map[string]any
					if err := json.Unmarshal([]byte(l), &entry); err != nil {
						t.Errorf("LOG_FORMAT=json printed a line that is not JSON: %q", l)
					}
					if strings.Contains(l, announcement) {
						curl, _ = entry["try"].(string)
					}
				}
			case "console":
				for i, l := range lines {
					if json.Valid([]byte(l)) {
						t.Errorf("LOG_FORMAT=console printed a JSON line: %q", l)
					}
					if strings.Contains(l, announcement) {
						if !strings.Contains(l, "secret_key=sk_dev_") || i+1 >= len(lines) {
							t.Fatalf("announcement: got %q and %d lines after it; want the key, then the curl line", l, len(lines)-i-1)
						}
						curl = lines[i+1]
					}
				}
			}
			if !strings.HasPrefix(curl, "curl -s -X POST http://localhost:") {
				t.Fatalf("curl line: got %q", curl)
			}
			pastes(t, curl)
		})
	}
}
