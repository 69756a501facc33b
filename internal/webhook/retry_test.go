package webhook

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultScheduleLastsADay(t *testing.T) {
	s, err := ParseSchedule(DefaultSchedule)
	if err != nil {
		t.Fatal(err)
	}
	if s[0] >= 30*time.Second {
		t.Errorf("first retry after %s, want well under 30s", s[0])
	}
	// Even with every wait cut by the most jitter, retries go on past 24h.
	if min := time.Duration(float64(s.Total()) * (1 - jitter)); min <= 24*time.Hour {
		t.Errorf("retries end after %s at the earliest, want past 24h", min)
	}
	if got, want := s.MaxAttempts(), len(s)+1; got != want {
		t.Errorf("MaxAttempts: got %d, want %d", got, want)
	}
}

func TestParseScheduleRefuses(t *testing.T) {
	for _, in := range []string{"", "5s,,1m", "5", "-1s", "0s", "5s,soon"} {
		if _, err := ParseSchedule(in); err == nil || !strings.Contains(err.Error(), "duration above zero") {
			t.Errorf("ParseSchedule(%q): got %v, want an error", in, err)
		}
	}
}

// TestRetryWaits: each failed attempt waits its step of the schedule,
// jittered by at most 10% either way, the last step repeating past its end.
func TestRetryWaits(t *testing.T) {
	s := Schedule{time.Second, time.Minute, time.Hour}
	p := retryPolicy{schedule: s, now: time.Now}
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, time.Minute}, {3, time.Hour}, {7, time.Hour}, {0, time.Second}} {
		lo, hi := time.Duration(float64(c.want)*0.9), time.Duration(float64(c.want)*1.1)
		seen := map[time.Duration]bool{}
		for range 50 {
			got := p.wait(c.attempt)
			if got < lo || got > hi {
				t.Fatalf("attempt %d: waited %s, want %s to %s", c.attempt, got, lo, hi)
			}
			seen[got] = true
		}
		if len(seen) < 2 {
			t.Errorf("attempt %d: every wait was the same, want jitter", c.attempt)
		}
	}
}
