package migrations_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/migrations"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := fs.ReadDir(migrations.FS, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestDialectsMatch keeps the two dialects at the same versions, so either
// store moves through the same schema history.
func TestDialectsMatch(t *testing.T) {
	pg, lite := names(t, "postgres"), names(t, "sqlite")
	if !slices.Equal(pg, lite) {
		t.Errorf("sqlite migrations: got %v, want the same names as postgres %v", lite, pg)
	}
}

func TestEveryFileHasUpAndDown(t *testing.T) {
	for _, dir := range []string{"postgres", "sqlite"} {
		for _, name := range names(t, dir) {
			b, err := fs.ReadFile(migrations.FS, dir+"/"+name)
			if err != nil {
				t.Fatal(err)
			}
			for _, mark := range []string{"-- +goose Up", "-- +goose Down"} {
				if !strings.Contains(string(b), mark) {
					t.Errorf("%s/%s: want a %q section", dir, name, mark)
				}
			}
		}
	}
}

// upDownUp applies every migration, undoes them all, and applies them again.
func upDownUp(t *testing.T, dialect goose.Dialect, db *sql.DB, dir string) {
	t.Helper()
	ctx := context.Background()
	sub, err := fs.Sub(migrations.FS, dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(dialect, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	// The newest migration's version: versions are numbered, not counted.
	all := names(t, dir)
	want, err := strconv.ParseInt(strings.SplitN(all[len(all)-1], "_", 2)[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name        string
		run         func() error
		wantVersion int64
	}{
		{"up", func() error { _, err := p.Up(ctx); return err }, want},
		{"down to 0", func() error { _, err := p.DownTo(ctx, 0); return err }, 0},
		{"up again", func() error { _, err := p.Up(ctx); return err }, want},
	}
	for _, st := range steps {
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := p.GetDBVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != st.wantVersion {
			t.Errorf("after %s: version got %d, want %d", st.name, got, st.wantVersion)
		}
	}
}

func TestSQLiteUpDownUp(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db")+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	upDownUp(t, goose.DialectSQLite3, db, "sqlite")
}

func TestPostgresUpDownUp(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("pgx", pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	upDownUp(t, goose.DialectPostgres, db, "postgres")
}
