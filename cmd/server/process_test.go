package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the server binary, built at most once per run of the tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "signin-tokens-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildServer builds the real program, once per run of the tests, with the
// race detector when the tests run with it (the build cache then already
// holds every package), and returns its path.
var buildServer = sync.OnceValues(func() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build the server: %w", err)
	}
	path := filepath.Join(binDir, "server")
	args := []string{"build", "-o", path}
	if raceEnabled() {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return path, nil
})

// serverBinary returns the built program's path, or ends the test.
func serverBinary(t *testing.T) string {
	t.Helper()
	path, err := buildServer()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// process is the real binary running as a child process.
type process struct {
	logLines
	t      *testing.T
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	addr   string // 127.0.0.1:PORT
	stderr bytes.Buffer
	exited chan struct{} // closed once the process has exited
	err    error         // what Wait returned; read after exited is closed
}

// spawn starts the server binary with env as its whole environment and waits
// until it listens. The process is killed when the test ends, if still running.
func spawn(t *testing.T, env map[string]string) *process {
	t.Helper()
	if _, ok := env["HTTP_ADDR"]; !ok {
		env["HTTP_ADDR"] = "127.0.0.1:0"
	}
	p := &process{t: t, cmd: exec.Command(serverBinary(t)), exited: make(chan struct{})}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	p.cmd.Stdout = pw
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go p.read(pr, listening)
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("server %d stderr:\n%s", p.cmd.Process.Pid, p.stderr.Bytes())
			p.mu.Lock()
			for _, line := range p.lines {
				if line["level"] == "error" || line["level"] == "warn" {
					t.Logf("server %d log: %v", p.cmd.Process.Pid, line)
				}
			}
			p.mu.Unlock()
		}
	})
	select {
	case p.addr = <-listening:
		p.base = "http://" + p.addr
	case <-p.exited:
		t.Fatalf("server exited before listening: %v\n%s", p.err, p.stderr.Bytes())
	case <-time.After(30 * time.Second):
		t.Fatal("server did not listen within 30s")
	}
	return p
}

// terminate sends SIGTERM.
func (p *process) terminate() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
}

// waitExit waits up to limit for the process to exit and returns its exit
// code; it ends the test if the process is still running after limit.
func (p *process) waitExit(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		p.t.Fatalf("server still running %s after being told to stop", limit)
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		return exit.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}
