package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// tokenColumnNames are the sign_in_tokens columns COPY fills.
var tokenColumnNames = []string{"id", "user_id", "org_id", "status", "ticket_hash",
	"created_at", "updated_at", "expires_at", "accepted_at", "revoked_at"}

// prepare stores n pending tokens with real tickets, signed with the
// service's key, for a redeem run; it is not timed.
func (b *bench) prepare(ctx context.Context, n int) ([]issued, error) {
	if b.ticketer == nil {
		return nil, errors.New("no signing key to prepare tickets with")
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	items := make([]issued, n)
	toks := make([]tokens.Token, n)
	var wg sync.WaitGroup
	var signErr error
	var once sync.Once
	parts := runtime.GOMAXPROCS(0)
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += parts {
				t := tokens.Token{ID: tokens.KindSignIn.NewID(time.Now()), UserID: fmt.Sprintf("user_%d", i%100_000),
					Status: tokens.StatusPending, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
				ticket, err := b.ticketer.Sign(t)
				if err != nil {
					once.Do(func() { signErr = err })
					return
				}
				t.TicketHash = tokens.HashTicket(ticket)
				toks[i] = t
				items[i] = issued{ticket: ticket, id: t.ID, hash: t.TicketHash}
			}
		}()
	}
	wg.Wait()
	if signErr != nil {
		return nil, signErr
	}
	i := 0
	_, err := b.admin.CopyFrom(ctx, pgx.Identifier{"sign_in_tokens"}, tokenColumnNames,
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			t := toks[i]
			i++
			return []any{t.ID, t.UserID, nil, string(t.Status), t.TicketHash,
				t.CreatedAt, t.UpdatedAt, t.ExpiresAt, nil, nil}, nil
		}))
	return items, err
}

// seed COPYs n tokens spread over 100,000 users and the last 30 days, most
// of them pending, then vacuums and analyses the table as autovacuum would.
func (b *bench) seed(ctx context.Context, n int) error {
	fmt.Fprintf(b.out, "seeding %s tokens with COPY ... ", thousands(n))
	began := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UTC().Truncate(time.Millisecond)
	const month = 30 * 24 * time.Hour
	hash := make([]byte, 32)
	i := 0
	row := make([]any, len(tokenColumnNames))
	_, err := b.admin.CopyFrom(ctx, pgx.Identifier{"sign_in_tokens"}, tokenColumnNames,
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			for j := 0; j < len(hash); j += 8 {
				v := rng.Uint64()
				for k := 0; k < 8; k++ {
					hash[j+k] = byte(v >> (8 * k))
				}
			}
			created := now.Add(-time.Duration(rng.Int64N(int64(month))))
			updated := created.Add(time.Duration(rng.Int64N(int64(time.Hour))))
			var accepted, revoked any
			status := tokens.StatusPending
			switch p := rng.IntN(100); {
			case p < 25:
				status, accepted = tokens.StatusAccepted, updated
			case p < 30:
				status, revoked = tokens.StatusRevoked, updated
			default:
				updated = created
			}
			row[0], row[1], row[2], row[3], row[4] = tokens.KindSignIn.NewID(created), fmt.Sprintf("user_%d", rng.IntN(100_000)), nil, string(status), hash
			row[5], row[6], row[7], row[8], row[9] = created, updated, created.Add(month), accepted, revoked
			return row, nil
		}))
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if b.app != nil { // the application's table holds the same rows
		if _, err := b.admin.Exec(ctx, `INSERT INTO app_tokens (id, user_id, org_id, status, ticket_hash,
			created_at, updated_at, expires_at, accepted_at, revoked_at) SELECT `+strings.Join(tokenColumnNames, ", ")+`
			FROM sign_in_tokens`); err != nil {
			return fmt.Errorf("seed the app's table: %w", err)
		}
	}
	copied := time.Since(began)
	if _, err := b.admin.Exec(ctx, "VACUUM (ANALYZE) "+b.tables()); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Fprintf(b.out, "COPY %.1fs (%.0f rows/s), VACUUM ANALYZE %.1fs\n\n",
		copied.Seconds(), float64(n)/copied.Seconds(), (time.Since(began) - copied).Seconds())
	b.fresh = false // from now on the stored tokens stay
	return nil
}

// explainList prints the plans, on the seeded table, of the statements the
// PostgreSQL store's List sends for each filter, of the retention sweep's
// (rolled back) and of a group of redemptions.
func (b *bench) explainList(ctx context.Context) error {
	filters := []tokens.ListFilter{
		{Limit: 10},
		{UserID: "user_4242", Limit: 10},
		{Status: tokens.StatusPending, Limit: 10},
		{Status: tokens.StatusRevoked, Limit: 10},
		{Status: tokens.StatusRevoked, Limit: 10, Offset: 1000},
		{UserID: "user_4242", Status: tokens.StatusAccepted, Limit: 10},
	}
	for _, f := range filters {
		page, count := postgres.ListQueries(f)
		for _, q := range []postgres.Query{page, count} {
			if err := b.explain(ctx, "list "+describeFilter(f)+": ", q); err != nil {
				return err
			}
		}
	}
	// The sweep runs every minute: usually with nothing to delete (the cutoff
	// now), and with a batch to delete when tokens expire (a cutoff in 15 days,
	// half the seeded tokens expired by then).
	for _, cutoff := range []time.Time{time.Now(), time.Now().Add(15 * 24 * time.Hour)} {
		for _, q := range postgres.RetentionQueries(cutoff, 500) {
			if err := b.explain(ctx, "retention, cutoff "+cutoff.UTC().Format(time.DateOnly)+", rolled back: ", q); err != nil {
				return err
			}
		}
	}
	return b.explainRedeemGroup(ctx)
}

// explain prints the plan of q, run in a transaction rolled back after.
func (b *bench) explain(ctx context.Context, title string, q postgres.Query) error {
	tx, err := b.admin.Begin(ctx)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+q.SQL, q.Args...)
	return b.printPlan("EXPLAIN (ANALYZE, BUFFERS) "+title+oneLine(q.SQL), rows, err)
}

// explainRedeemGroup prints the plan of a group of 16 redemptions, the
// statement the service's writers send under load, in a transaction rolled
// back afterwards.
func (b *bench) explainRedeemGroup(ctx context.Context) error {
	tx, err := b.admin.Begin(ctx)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	defer tx.Rollback(ctx)
	var ids []string
	var hashes [][]byte
	rows, err := tx.Query(ctx, `SELECT id, ticket_hash FROM sign_in_tokens
		WHERE status = 'pending' AND expires_at > now() ORDER BY random() LIMIT 16`)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	for rows.Next() {
		var id string
		var hash []byte
		if err := rows.Scan(&id, &hash); err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		ids, hashes = append(ids, id), append(hashes, hash)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	group := postgres.RedeemGroupQuery(ids, hashes, time.Now())
	rows, err = tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+group.SQL, group.Args...)
	return b.printPlan(fmt.Sprintf("EXPLAIN (ANALYZE, BUFFERS) of a group of %d redemptions, rolled back: %s",
		len(ids), oneLine(group.SQL)), rows, err)
}

// printPlan prints an EXPLAIN's lines under title; err is the query's.
func (b *bench) printPlan(title string, rows pgx.Rows, err error) error {
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	fmt.Fprintln(b.out, title)
	for _, l := range lines {
		fmt.Fprintln(b.out, "  "+l)
	}
	fmt.Fprintln(b.out)
	return nil
}

// oneLine puts a statement on one line, its whitespace runs made single spaces.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// describeFilter names a list filter's parts that are set, e.g.
// "user_id=user_1 status=revoked".
func describeFilter(f tokens.ListFilter) string {
	var parts []string
	if f.UserID != "" {
		parts = append(parts, "user_id="+f.UserID)
	}
	if f.Status != "" {
		parts = append(parts, "status="+string(f.Status))
	}
	if f.Offset > 0 {
		parts = append(parts, fmt.Sprintf("offset=%d", f.Offset))
	}
	if len(parts) == 0 {
		return "unfiltered"
	}
	return strings.Join(parts, " ")
}
