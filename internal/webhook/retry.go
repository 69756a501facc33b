package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/riverqueue/river/rivertype"
)

// DefaultSchedule is the wait before each retry of a failed delivery: the
// first within seconds, then backing off, 27.6 hours in all, so that an
// endpoint down for a day still gets every event.
const DefaultSchedule = "5s,1m,5m,30m,2h,5h,10h,10h"

// Schedule is the wait before each retry; a delivery is attempted once,
// then once after each wait, then given up (discarded).
type Schedule []time.Duration

// ParseSchedule reads comma-separated durations, each above zero.
func ParseSchedule(s string) (Schedule, error) {
	var out Schedule
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		d, err := time.ParseDuration(part)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a duration above zero such as 5s or 2h", part)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, errors.New("no retries")
	}
	return out, nil
}

// Total is the sum of the waits: how long after its first attempt a
// delivery is given up, jitter aside.
func (s Schedule) Total() time.Duration {
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return total
}

// MaxAttempts is the first attempt and one per wait.
func (s Schedule) MaxAttempts() int { return len(s) + 1 }

// jitter is the fraction a wait is moved by at most, either way, so that
// deliveries failed together do not all come back at one instant.
const jitter = 0.1

// retryPolicy is River's ClientRetryPolicy for Schedule.
type retryPolicy struct {
	schedule Schedule
	now      func() time.Time
}

// NextRetry is the time of the attempt after job's attempt number
// job.Attempt failed.
func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	var a deliveryArgs
	json.Unmarshal(job.EncodedArgs, &a) // a job whose args do not decode fails its attempts anyway
	return p.now().Add(p.wait(a.Prior + job.Attempt))
}

// wait is the jittered wait after attempt number attempt (from 1) failed;
// past the schedule's end, its last wait.
func (p retryPolicy) wait(attempt int) time.Duration {
	i := min(max(attempt-1, 0), len(p.schedule)-1)
	d := p.schedule[i]
	return d + time.Duration((rand.Float64()*2-1)*jitter*float64(d))
}
