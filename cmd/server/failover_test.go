package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFailover crashes the primary under redemption load and promotes the
// standby, with asynchronous and with synchronous replication, each with a
// standby that keeps up and with one that lags (the primary's WAL sender
// stopped for the last 0.5 s before the crash, as on a network hiccup). Two service
// replicas are given both hosts in one URL; every ticket is redeemed once
// before the failover (some of those attempts fall into it) and once after.
// It reports acknowledged redemptions and creates missing on the promoted
// standby and tickets redeemed twice, and requires them to be zero with
// synchronous replication; with a lagging asynchronous standby it requires
// them not to be, which shows both the hazard and that the count sees it.
// In every mode it requires no 500 and both replicas ready again without a
// restart.
func TestFailover(t *testing.T) {
	needFailoverTest(t)
	for _, mode := range []struct {
		name      string
		sync, lag bool
	}{{"async", false, false}, {"async-lagging", false, true}, {"sync", true, false}, {"sync-lagging", true, true}} {
		t.Run(mode.name, func(t *testing.T) {
			r := runFailover(t, mode.sync, mode.lag)
			t.Logf("FAILOVER %s: %s", mode.name, r)
			if r.serverErrors > 0 || r.transportErrors > 0 {
				t.Errorf("%d answers 5xx other than 503, %d failed exchanges: want 0", r.serverErrors, r.transportErrors)
			}
			if r.missing503RetryAfter > 0 {
				t.Errorf("%d answers 503 without Retry-After: want 0", r.missing503RetryAfter)
			}
			if mode.sync && (r.lostRedemptions > 0 || r.doubleRedemptions > 0 || r.lostCreates > 0) {
				t.Errorf("synchronous replication: %d acknowledged redemptions lost, %d tickets redeemed twice, %d acknowledged creates lost: want 0",
					r.lostRedemptions, r.doubleRedemptions, r.lostCreates)
			}
			if mode.lag && !mode.sync && (r.lostRedemptions == 0 || r.doubleRedemptions == 0) {
				t.Errorf("asynchronous replication, the standby 0.5 s behind: %d acknowledged redemptions lost, %d tickets redeemed twice: want some of each",
					r.lostRedemptions, r.doubleRedemptions)
			}
			if r.okBefore == 0 || r.okAfter == 0 {
				t.Errorf("%d redemptions acknowledged before the crash, %d after the promotion: the load did not span the failover",
					r.okBefore, r.okAfter)
			}
		})
	}
}

// failoverReport is what one failover run measured.
type failoverReport struct {
	tickets              int // tickets issued before the load
	firstTried           int // of them tried during the load
	okBefore, okAfter    int // redemptions answered 200 before the crash, after the promotion
	unavailable          int // answers 503 during the load
	missing503RetryAfter int
	serverErrors         int // 5xx other than 503
	transportErrors      int
	lostRedemptions      int // answered 200, yet pending on the promoted standby
	doubleRedemptions    int // answered 200 twice
	acceptedUnacked      int // accepted on the promoted standby, though no caller heard 200
	createsAcked         int // creates answered 200 during the load
	lostCreates          int // of them, missing on the promoted standby
	window               []time.Duration
	readyAgain           []time.Duration // per replica: from the promotion to /readyz 200
	promoteAfter         time.Duration   // from the crash to the promotion's end
}

func (r failoverReport) String() string {
	return fmt.Sprintf("lost acknowledged redemptions %d, tickets redeemed twice %d, lost acknowledged creates %d of %d, "+
		"500s %d, exchange errors %d, 503s %d (without Retry-After %d), accepted but never acknowledged %d; "+
		"tickets %d (%d tried before the second round), 200s before the crash %d, after the promotion %d; "+
		"promotion done %s after the crash; unavailable per replica %v; ready again after the promotion per replica %v",
		r.lostRedemptions, r.doubleRedemptions, r.lostCreates, r.createsAcked,
		r.serverErrors, r.transportErrors, r.unavailable, r.missing503RetryAfter, r.acceptedUnacked,
		r.tickets, r.firstTried, r.okBefore, r.okAfter,
		r.promoteAfter.Round(time.Millisecond), roundAll(r.window), roundAll(r.readyAgain))
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return out
}

// outcome is one answer a client got.
type outcome struct {
	status     int
	retryAfter bool
	at         time.Time // when the answer came
	err        error
}

// runFailover runs one failover and measures it.
func runFailover(t *testing.T, syncRep, lag bool) failoverReport {
	pair := newReplicatedPair(t, syncRep)
	keyFile, _ := writeSigningKey(t)
	var replicas []*process
	for range 2 {
		env := serverEnv(t, pair.serviceURL())
		env["SIGNING_KEY_FILE"] = keyFile
		env["REQUEST_TIMEOUT"] = "2s"
		env["RETENTION_PERIOD"] = "0"
		replicas = append(replicas, spawn(t, env))
	}
	t.Cleanup(testClient.CloseIdleConnections)
	for _, p := range replicas {
		waitReady(t, p.base)
	}

	// Tickets, issued and replicated before anything breaks.
	const ticketCount = 2000
	tickets := make([]issued, ticketCount)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= ticketCount {
					return
				}
				tok, err := createTicket(replicas[(i+w)%2].base, fmt.Sprintf("user_%d", i))
				if err != nil {
					t.Errorf("create before the failover: %v", err)
					return
				}
				tickets[i] = tok
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Readiness of each replica, polled every 50 ms.
	stopPolling := make(chan struct{})
	readyAt := make([][]outcome, len(replicas))
	var pollers sync.WaitGroup
	for i, p := range replicas {
		pollers.Add(1)
		go func() {
			defer pollers.Done()
			for {
				select {
				case <-stopPolling:
					return
				case <-time.After(50 * time.Millisecond):
				}
				r, err := send(p.base, "GET", "/readyz", "", "")
				readyAt[i] = append(readyAt[i], outcome{status: r.status, at: time.Now(), err: err})
			}
		}()
	}

	// The load: workers redeem tickets in turn through both replicas, a
	// creator issues new ones; the primary crashes in the middle.
	first := make([]outcome, ticketCount)
	tried := make([]bool, ticketCount)
	var created []issued
	var createdMu sync.Mutex
	var crashAt, promotedAt time.Time
	var phase atomic.Int32 // 0 load before the crash, 1 crashed, 2 promoted, 3 stop
	next.Store(0)
	var workers sync.WaitGroup
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for phase.Load() < 3 {
				i := int(next.Add(1)) - 1
				if i >= ticketCount {
					return
				}
				r, err := send(replicas[i%2].base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tickets[i].ticket))
				first[i] = outcome{status: r.status, retryAfter: r.header.Get("Retry-After") != "", at: time.Now(), err: err}
				tried[i] = true
				pause := 20 * time.Millisecond
				if err != nil || r.status != 200 {
					pause = 100 * time.Millisecond
				}
				time.Sleep(pause)
			}
		}()
	}
	var creates []outcome
	workers.Add(1)
	go func() {
		defer workers.Done()
		for i := 0; phase.Load() < 3; i++ {
			r, err := send(replicas[i%2].base, "POST", "/v1/sign_in_tokens", testSecretKey, fmt.Sprintf(`{"user_id":"load_%d"}`, i))
			o := outcome{status: r.status, retryAfter: r.header.Get("Retry-After") != "", at: time.Now(), err: err}
			createdMu.Lock()
			creates = append(creates, o)
			if err == nil && r.status == 200 {
				created = append(created, issued{id: r.body["id"].(string), ticket: r.body["token"].(string)})
			}
			createdMu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	time.Sleep(time.Second)
	if lag {
		pair.primary.pauseWALSender()
	}
	time.Sleep(500 * time.Millisecond)
	crashAt = time.Now()
	phase.Store(1)
	pair.primary.crash()
	time.Sleep(time.Second) // the cluster manager noticing
	pair.standby.promote()
	promotedAt = time.Now()
	phase.Store(2)
	time.Sleep(2500 * time.Millisecond)
	phase.Store(3)
	workers.Wait()
	for _, p := range replicas {
		waitReady(t, p.base)
	}
	close(stopPolling)
	pollers.Wait()

	// What the promoted standby holds before the second round: a ticket
	// acknowledged before the crash and pending here was lost.
	afterLoad := storedStatuses(t, pair.standby)

	// The second round: every ticket once more, through the other replica.
	second := make([]outcome, ticketCount)
	next.Store(0)
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= ticketCount {
					return
				}
				r, err := send(replicas[(i+1)%2].base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tickets[i].ticket))
				second[i] = outcome{status: r.status, retryAfter: r.header.Get("Retry-After") != "", at: time.Now(), err: err}
			}
		}()
	}
	workers.Wait()

	final := storedStatuses(t, pair.standby)

	rep := failoverReport{tickets: ticketCount, promoteAfter: promotedAt.Sub(crashAt), createsAcked: len(created)}
	count := func(o outcome) {
		switch {
		case o.err != nil:
			rep.transportErrors++
			t.Logf("exchange failed: %v", o.err)
		case o.status == 503:
			rep.unavailable++
			if !o.retryAfter {
				rep.missing503RetryAfter++
			}
		case o.status >= 500:
			rep.serverErrors++
		}
	}
	for i := range ticketCount {
		if tried[i] {
			rep.firstTried++
			count(first[i])
		}
		count(second[i])
		if second[i].err == nil && second[i].status >= 500 {
			t.Errorf("ticket %d: the redemption after recovery answered %d", i, second[i].status)
		}
		acks := 0
		if tried[i] && first[i].status == 200 {
			acks++
			if first[i].at.Before(crashAt) {
				rep.okBefore++
			} else if first[i].at.After(promotedAt) {
				rep.okAfter++
			}
		}
		if second[i].status == 200 {
			acks++
		}
		switch {
		case acks > 1:
			rep.doubleRedemptions++
		case acks == 0 && final[tickets[i].id] == "accepted":
			rep.acceptedUnacked++
		}
		if tried[i] && first[i].status == 200 && afterLoad[tickets[i].id] != "accepted" {
			rep.lostRedemptions++
		}
	}
	for _, o := range creates {
		count(o)
	}
	for _, c := range created {
		if _, ok := final[c.id]; !ok {
			rep.lostCreates++
		}
	}
	if rep.okAfter == 0 {
		// The load ran out of tickets before the promotion: the second
		// round's 200s are the answers after it.
		for i := range ticketCount {
			if second[i].status == 200 {
				rep.okAfter++
			}
		}
	}

	// Per replica: from its first 503 after the crash to its first 200
	// after that, and from the promotion to its /readyz answering 200 again.
	for i, p := range replicas {
		var answers []outcome
		for j := range ticketCount {
			if tried[j] && j%2 == i && first[j].err == nil && first[j].at.After(crashAt) {
				answers = append(answers, first[j])
			}
		}
		slices.SortFunc(answers, func(a, b outcome) int { return a.at.Compare(b.at) })
		// From the first 503 to the first 200 after the last one.
		var down, last, up time.Time
		for _, o := range answers {
			if o.status == 503 {
				if down.IsZero() {
					down = o.at
				}
				last = o.at
			}
		}
		for _, o := range answers {
			if o.status == 200 && !last.IsZero() && o.at.After(last) {
				up = o.at
				break
			}
		}
		if up.IsZero() {
			rep.window = append(rep.window, -1)
		} else {
			rep.window = append(rep.window, up.Sub(down))
		}
		ready := time.Time{}
		var statuses []string
		for _, o := range readyAt[i] {
			if o.at.After(crashAt) && len(statuses) < 200 {
				statuses = append(statuses, fmt.Sprint(o.status))
			}
			if o.at.After(promotedAt) && o.err == nil && o.status == 200 && ready.IsZero() {
				ready = o.at
			}
		}
		if ready.IsZero() {
			t.Errorf("replica %s: /readyz never answered 200 after the promotion: %s", p.base, strings.Join(statuses, " "))
			rep.readyAgain = append(rep.readyAgain, -1)
		} else {
			rep.readyAgain = append(rep.readyAgain, ready.Sub(promotedAt))
		}
	}
	return rep
}

// TestFailoverCanceledReplicationWait stalls the synchronous standby (its
// WAL receiver stopped) so that every commit waits for it. A commit whose
// wait is cut short, by the request's deadline (the service's cancel
// request) or by an operator's pg_cancel_backend, has committed on the
// primary alone: PostgreSQL warns and reports success. Each such redemption,
// grouped ones included, must answer 503, never 200; /readyz must say the
// primary takes no writes. Then the primary crashes before the standby got
// those commits, the standby is promoted, and every ticket is tried again:
// none may be acknowledged twice, and a retry under the same Idempotency-Key
// gets its 200.
func TestFailoverCanceledReplicationWait(t *testing.T) {
	needFailoverTest(t)
	pair := newReplicatedPair(t, true)
	keyFile, _ := writeSigningKey(t)
	start := func(timeout, requireSync string) *process {
		env := serverEnv(t, pair.serviceURL())
		env["SIGNING_KEY_FILE"] = keyFile
		env["REQUEST_TIMEOUT"] = timeout
		env["REQUIRE_SYNC_REPLICATION"] = requireSync
		return spawn(t, env)
	}
	short, long, strict := start("1s", "false"), start("30s", "false"), start("5s", "true")
	t.Cleanup(testClient.CloseIdleConnections)
	waitReady(t, short.base)
	waitReady(t, long.base)
	waitReady(t, strict.base) // REQUIRE_SYNC_REPLICATION, on a synchronous primary
	if got := metricValue(t, strict.base, "signin_tokens_db_synchronous_replication"); got != 1 {
		t.Errorf("synchronous replication on the primary: got %v, want 1", got)
	}
	if _, err := createTicket(strict.base, "user_strict"); err != nil {
		t.Errorf("REQUIRE_SYNC_REPLICATION on a synchronous primary: %v", err)
	}

	const grouped, keyed = 12, 4 // tickets 0 to 11 at once, the first 4 with a key; ticket 12 canceled by hand
	tickets := make([]issued, grouped+1)
	for i := range tickets {
		tok, err := createTicket(short.base, fmt.Sprintf("user_%d", i))
		if err != nil {
			t.Fatal(err)
		}
		tickets[i] = tok
	}
	keyOf := func(i int) []string {
		if i < keyed {
			return []string{"Idempotency-Key", fmt.Sprintf("stall-%d", i)}
		}
		return nil
	}
	acks := make([]int, len(tickets))
	redeem := func(base string, i int) reply {
		r, err := send(base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tickets[i].ticket), keyOf(i)...)
		if err != nil {
			t.Errorf("ticket %d: %v", i, err)
		}
		return r
	}

	pair.standby.pauseWALReceiver()
	began := time.Now()
	// The first two occupy both writers, each waiting for the standby until
	// its deadline; the other ten queue meanwhile and go out as one group,
	// which waits until the earliest of their deadlines.
	replies := make([]reply, grouped)
	var lone sync.WaitGroup
	for i := range 2 {
		lone.Add(1)
		go func() {
			defer lone.Done()
			replies[i] = redeem(short.base, i)
		}()
	}
	time.Sleep(400 * time.Millisecond)
	copy(replies[2:], together(t, grouped-2, func(i int) (reply, error) { return redeem(short.base, i+2), nil }))
	lone.Wait()
	for i, r := range replies {
		if r.status == 200 {
			acks[i]++
		}
		checkError(t, fmt.Sprintf("ticket %d, its commit's replication wait canceled at the deadline", i), r, 503, "service_unavailable")
	}
	t.Logf("%d redemptions with the standby stalled answered in %s", grouped, time.Since(began).Round(time.Millisecond))
	if n := metricValue(t, short.base, "signin_tokens_db_write_groups_total"); n < 1 {
		t.Errorf("write groups: got %v, want at least one: the test did not exercise group commit", n)
	}
	if n := metricValue(t, short.base, "signin_tokens_db_unreplicated_commits_total"); n < 1 {
		t.Errorf("unreplicated commits: got %v, want at least one", n)
	}
	if r := mustSend(t, short.base, "GET", "/readyz", "", ""); r.status != 503 {
		t.Errorf("/readyz with the standby stalled: got %v, want 503", r)
	}
	if r := redeem(short.base, 0); r.status != 503 {
		t.Errorf("keyed retry with the standby stalled: got %v, want 503", r)
		if r.status == 200 {
			acks[0]++
		}
	}

	// An operator cancels the waiting commit: the same warning, no deadline.
	answered := make(chan reply, 1)
	go func() { answered <- redeem(long.base, grouped) }()
	admin := pair.primary.connect("postgres")
	waitFor(t, 10*time.Second, "a commit waiting for the standby", func() bool {
		var n int
		err := admin.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND datname = 'failover' AND query LIKE '%sign_in_tokens%'`).Scan(&n)
		return err == nil && n > 0
	})
	if _, err := admin.Exec(context.Background(),
		`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND datname = 'failover'`); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-answered:
		if r.status == 200 {
			acks[grouped]++
		}
		checkError(t, "a redemption whose replication wait an operator canceled", r, 503, "service_unavailable")
	case <-time.After(20 * time.Second):
		t.Fatal("the redemption whose replication wait was canceled did not answer within 20s")
	}
	admin.Close(context.Background())

	// The primary dies with those commits its own alone; the standby takes over.
	pair.primary.crash()
	pair.standby.resumeWALReceiver()
	pair.standby.promote()
	waitReady(t, short.base)
	waitReady(t, long.base)
	// The promoted standby has no standby of its own: the strict replica
	// refuses, rather than acknowledge writes a second failover could lose.
	waitFor(t, 10*time.Second, "REQUIRE_SYNC_REPLICATION refusing an asynchronous primary", func() bool {
		r, err := send(strict.base, "GET", "/readyz", "", "")
		return err == nil && r.status == 503 && strings.Contains(string(r.raw), "service_unavailable")
	})
	r := mustSend(t, strict.base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_strict"}`)
	checkError(t, "REQUIRE_SYNC_REPLICATION, create on an asynchronous primary", r, 503, "service_unavailable")
	if got := metricValue(t, strict.base, "signin_tokens_db_synchronous_replication"); got != 0 {
		t.Errorf("synchronous replication after the failover: got %v, want 0", got)
	}
	for i := range tickets {
		r := redeem(long.base, i)
		for tries := 0; r.status == 503 && tries < 20; tries++ { // as a client retries a 503
			time.Sleep(250 * time.Millisecond)
			r = redeem(long.base, i)
		}
		switch {
		case r.status == 200:
			acks[i]++
		case r.code() != "sign_in_token_already_used_code":
			t.Errorf("ticket %d after the failover: got %v, want 200 or already used", i, r)
		}
	}
	for i, n := range acks {
		if n > 1 {
			t.Errorf("ticket %d: acknowledged %d times, want at most once", i, n)
		}
		if i < keyed && n != 1 {
			t.Errorf("ticket %d, redeemed under a key and retried with it: acknowledged %d times, want once", i, n)
		}
	}
}

// metricValue reads one unlabelled metric from the server's /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := testClient.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// storedStatuses reads every token's status on c.
func storedStatuses(t *testing.T, c *pgCluster) map[string]string {
	t.Helper()
	db := c.connect("failover")
	defer db.Close(context.Background())
	stored := map[string]string{}
	rows, err := db.Query(context.Background(), `SELECT id, status FROM sign_in_tokens`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		stored[id] = status
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return stored
}
