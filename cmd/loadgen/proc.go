package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// processCPU is a process's user and system CPU time so far, from
// /proc/<pid>/stat; 0 when it cannot be read.
func processCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64) // field 14 of stat
	stime, _ := strconv.ParseInt(fields[12], 10, 64) // field 15
	return time.Duration(utime+stime) * clockTick
}

// peakRSS is a process's peak resident set (VmHWM) in KiB; 0 when unknown.
func peakRSS(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// machineCPU is the CPU time all processors spent busy so far (every
// /proc/stat state but idle and iowait), summed over processors.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseInt(f, 10, 64)
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// cpuByPid is the CPU time of a set of processes.
type cpuByPid map[int]time.Duration

// since sums how much CPU the processes used after before was taken; a
// process that started in between counts from zero.
func (now cpuByPid) since(before cpuByPid) time.Duration {
	var total time.Duration
	for pid, t := range now {
		total += t - before[pid]
	}
	return total
}

// backendCPU is the CPU time of the Postgres backends serving clients of the
// bench database. Postgres's shared processes (WAL writer, checkpointer) are
// left out, as are other databases' backends on this shared server, and so
// are autovacuum workers: they clean up after whichever run came before, so
// counting them would charge one target for another's garbage.
func (b *bench) backendCPU(ctx context.Context) cpuByPid {
	if b.admin == nil { // no PostgreSQL (-store sqlite)
		return nil
	}
	rows, err := b.admin.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend'`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := cpuByPid{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			out[pid] = processCPU(pid)
		}
	}
	return out
}

// percentile is the q-quantile (0..1) of sorted durations, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// hotStats are a table's row updates and, of them, HOT updates: those that
// stayed on their heap page and wrote no index entry.
type hotStats struct{ upd, hot int64 }

// percent is the share of HOT updates, or -1 without updates.
func (h hotStats) percent() float64 {
	if h.upd == 0 {
		return -1
	}
	return 100 * float64(h.hot) / float64(h.upd)
}

func (h hotStats) add(o hotStats) hotStats { return hotStats{h.upd + o.upd, h.hot + o.hot} }

// hotStats reads a table's cumulative counters from pg_stat_user_tables.
func (b *bench) hotStats(ctx context.Context, table string) hotStats {
	var h hotStats
	if table != "" && b.admin != nil { // no PostgreSQL with -store sqlite
		b.admin.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE relid = to_regclass($1)`, table).Scan(&h.upd, &h.hot)
	}
	return h
}

// hotSince is what the table's counters gained since before. Backends
// report their counts when idle, at most about once a second and up to ten
// seconds after their last statement, so it waits, up to 12 s, until the
// counters show the want updates the run made.
func (b *bench) hotSince(ctx context.Context, table string, before hotStats, want int64) hotStats {
	deadline := time.Now().Add(12 * time.Second)
	for {
		now := b.hotStats(ctx, table)
		d := hotStats{now.upd - before.upd, now.hot - before.hot}
		if d.upd >= want || time.Now().After(deadline) || ctx.Err() != nil {
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// groupCounters reads the service's group commit counters from /metrics:
// groups sent and the writes they carried; zeros when unknown.
func (c *serviceClient) groupCounters(ctx context.Context) (groups, writes float64) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return 0, 0
	}
	res, err := c.client.Do(req)
	if err != nil {
		return 0, 0
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
		switch name {
		case "signin_tokens_db_write_groups_total":
			groups = v
		case "signin_tokens_db_grouped_writes_total":
			writes = v
		}
	}
	return groups, writes
}
