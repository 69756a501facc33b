//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY opens a pseudo-terminal and returns its two ends, or skips t where
// the machine has none.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var unlock int32
	var n uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		master.Close()
		t.Skipf("no pseudo-terminal: unlock: %v", errno)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		master.Close()
		t.Skipf("no pseudo-terminal: number: %v", errno)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skipf("no pseudo-terminal: %v", err)
	}
	return master, slave
}

// TestLogFormatAutoOnATerminal: with LOG_FORMAT unset and standard output a
// terminal, the logs are coloured console lines and the curl line is printed
// bare; with standard output a pipe they are JSON (TestZeroConfigRestart).
func TestLogFormatAutoOnATerminal(t *testing.T) {
	t.Parallel()
	master, slave := openPTY(t)
	pr, pw := io.Pipe()
	defer pr.Close()
	defer pw.Close()
	if got := [2]bool{isTerminal(slave), isTerminal(pw)}; got != [2]bool{true, false} {
		t.Fatalf("isTerminal(terminal), isTerminal(pipe): got %v, want [true false]", got)
	}
	out := &rawOutput{}
	read := make(chan struct{})
	go func() {
		out.read(master) // ends when the last slave end is closed
		close(read)
	}()
	t.Cleanup(func() {
		slave.Close()
		select {
		case <-read:
		case <-time.After(5 * time.Second):
			t.Error("the terminal's output did not end")
		}
		master.Close()
	})
	startWithOutput(t, map[string]string{"DATA_DIR": t.TempDir()}, slave)

	const announcement = "using a generated development secret key"
	waitFor(t, 5*time.Second, "the announcement", func() bool {
		return out.find(func(l string) bool { return strings.Contains(l, announcement) }) != ""
	})
	lines := out.all()
	for i, l := range lines {
		if json.Valid([]byte(l)) {
			t.Errorf("a JSON line on a terminal: %q", l)
		}
		if !strings.Contains(l, announcement) {
			continue
		}
		if !strings.Contains(l, "\x1b[") {
			t.Errorf("announcement %q: want colours on a terminal", l)
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "curl -s -X POST http://localhost:") {
			t.Fatalf("the line after the announcement: got %q, want the curl line", lines[i+1:])
		}
		pastes(t, lines[i+1])
	}
}
