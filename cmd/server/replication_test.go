package main

import (
	"strings"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
)

// TestRequireSyncReplication runs the service with REQUIRE_SYNC_REPLICATION
// on TEST_DATABASE_URL's primary, which has no synchronous standby: it
// starts and serves /healthz, but /readyz and every write answer 503 with
// the reason, the log says so once at start, and /metrics shows the state.
// (TestFailoverCanceledReplicationWait shows the same service ready on a
// synchronous primary, and refusing again once a failover left none.)
func TestRequireSyncReplication(t *testing.T) {
	t.Parallel()
	env := serverEnv(t, pgtest.URL(t))
	env["REQUIRE_SYNC_REPLICATION"] = "true"
	in := start(t, env)
	t.Cleanup(testClient.CloseIdleConnections)
	waitFor(t, 20*time.Second, "the database connected", func() bool { return in.logged("database ready") != nil })

	if r := mustSend(t, in.base, "GET", "/healthz", "", ""); r.status != 200 {
		t.Errorf("/healthz: got %v, want 200", r)
	}
	r := mustSend(t, in.base, "GET", "/readyz", "", "")
	checkError(t, "/readyz on an asynchronous primary", r, 503, "service_unavailable")
	r = mustSend(t, in.base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_1"}`)
	checkError(t, "create on an asynchronous primary", r, 503, "service_unavailable")
	const refusal = "REQUIRE_SYNC_REPLICATION: not ready, and refusing writes, until the primary replicates synchronously"
	// The line is written as the first probe finds the primary asynchronous,
	// and read from the log by another goroutine: wait for it.
	waitFor(t, 10*time.Second, "the refusal's log line", func() bool { return in.logged(refusal) != nil })
	line := in.logged(refusal)
	if line == nil || line["level"] != "error" || !strings.Contains(line["error"].(string), "synchronous_standby_names") {
		t.Errorf("start-up log: got %v, want an error line naming synchronous_standby_names", line)
	}
	for name, want := range map[string]float64{
		"signin_tokens_db_synchronous_replication":          0,
		"signin_tokens_db_synchronous_replication_required": 1,
	} {
		if got := metricValue(t, in.base, name); got != want {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
}
