package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		dataDir  string
		wantKind Kind
		wantPath string // for SQLite
		wantURL  string // for Postgres
		wantErr  string // a part of the error; "" for none
	}{
		{name: "empty", url: "", dataDir: "/var/lib/tokens", wantKind: SQLite, wantPath: "/var/lib/tokens/signin-tokens.db"},
		{name: "blank", url: "  ", dataDir: "data", wantKind: SQLite, wantPath: "data/signin-tokens.db"},
		{name: "empty without data dir", url: "", wantKind: SQLite, wantPath: "signin-tokens.db"},
		{name: "postgres", url: "postgres://u:p@db:5432/tokens?sslmode=disable", wantKind: Postgres, wantURL: "postgres://u:p@db:5432/tokens?sslmode=disable"},
		{name: "postgresql", url: "postgresql://db/tokens", wantKind: Postgres, wantURL: "postgresql://db/tokens"},
		{name: "postgres, upper-case scheme", url: "POSTGRES://db/tokens", wantKind: Postgres, wantURL: "POSTGRES://db/tokens"},
		{name: "sqlite absolute", url: "sqlite:///var/lib/tokens.db", wantKind: SQLite, wantPath: "/var/lib/tokens.db"},
		{name: "sqlite relative", url: "sqlite:tokens.db", wantKind: SQLite, wantPath: "tokens.db"},
		{name: "sqlite relative with slashes", url: "sqlite://data/tokens.db", wantKind: SQLite, wantPath: "data/tokens.db"},
		{name: "sqlite single slash", url: "sqlite:/abs/tokens.db", wantKind: SQLite, wantPath: "/abs/tokens.db"},
		{name: "plain absolute path", url: "/var/lib/tokens.db", wantKind: SQLite, wantPath: "/var/lib/tokens.db"},
		{name: "plain relative path", url: "./tokens.db", wantKind: SQLite, wantPath: "./tokens.db"},
		{name: "plain file name", url: "tokens.db", wantKind: SQLite, wantPath: "tokens.db"},
		{name: "windows drive", url: `C:\data\tokens.db`, wantKind: SQLite, wantPath: `C:\data\tokens.db`},
		{name: "mysql", url: "mysql://u:secret@db/x", wantErr: `unsupported scheme "mysql"`},
		{name: "mysql DSN", url: "user:secret@tcp(db)/x", wantErr: `unsupported scheme "user"`},
		{name: "file URI", url: "file:tokens.db", wantErr: `unsupported scheme "file"`},
		{name: "postgres without slashes", url: "postgres:db", wantErr: "postgres://"},
		{name: "sqlite without file", url: "sqlite://", wantErr: "names no file"},
		{name: "sqlite with parameters", url: "sqlite:tokens.db?mode=ro", wantErr: "no parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := Parse(tt.url, tt.dataDir)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %+v, want an error containing %q", loc, tt.wantErr)
				}
				for _, part := range []string{"DATABASE_URL", tt.wantErr, "postgres://", "sqlite:"} {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q: want it to contain %q", err, part)
					}
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if loc.Kind != tt.wantKind || loc.Path != tt.wantPath || loc.url != tt.wantURL {
				t.Errorf("got {%s %q %q}, want {%s %q %q}", loc.Kind, loc.Path, loc.url, tt.wantKind, tt.wantPath, tt.wantURL)
			}
		})
	}
}

func TestLocationString(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"postgres://u:secret@db:5432/tokens?sslmode=disable&password=secret", "postgres db:5432/tokens"},
		{"sqlite:///var/lib/tokens.db", "sqlite /var/lib/tokens.db"},
	}
	for _, tt := range tests {
		loc, err := Parse(tt.url, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := loc.String(); got != tt.want {
			t.Errorf("String() of %s: got %q, want %q", tt.url, got, tt.want)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	s, loc, err := Open(ctx, "", Options{DataDir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if want := "sqlite " + filepath.Join(dir, DefaultFileName); loc.Kind != SQLite || loc.String() != want {
		t.Errorf("location: got %s %q, want %s %q", loc.Kind, loc, SQLite, want)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DefaultFileName)); err != nil {
		t.Errorf("database file: %v", err)
	}
	if _, err := s.Get(ctx, "sit_none"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("Get: got %v, want %v", err, tokens.ErrNotFound)
	}
}

func TestOpenPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, loc, err := Open(ctx, pgtest.URL(t), Options{DataDir: "unused"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if loc.Kind != Postgres || strings.Contains(loc.String(), "search_path") {
		t.Errorf("location: got %s %q, want %s \"postgres HOST/DB\"", loc.Kind, loc, Postgres)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if _, err := s.Get(ctx, "sit_none"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("Get: got %v, want %v", err, tokens.ErrNotFound)
	}
}

func TestOpenUnsupported(t *testing.T) {
	s, _, err := Open(context.Background(), "mysql://x", Options{DataDir: t.TempDir()})
	if err == nil || s != nil {
		t.Errorf("got %v, %v; want nil store and an error", s, err)
	}
}
