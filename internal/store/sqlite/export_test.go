package sqlite

import (
	"context"
	"database/sql"
	"testing"
)

// Pragma is one connection setting as read back from a connection.
type Pragma struct {
	Name      string
	Got, Want string
}

// PragmasForTest reads the connection settings from three connections held
// at once, so each is a separate connection of the pool.
func PragmasForTest(t *testing.T, s *Store) []Pragma {
	t.Helper()
	ctx := context.Background()
	want := []Pragma{
		{Name: "journal_mode", Want: "wal"},
		{Name: "busy_timeout", Want: "5000"},
		{Name: "foreign_keys", Want: "1"},
		{Name: "synchronous", Want: "1"}, // NORMAL
	}
	var out []Pragma
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for _, p := range want {
			if err := c.QueryRowContext(ctx, "PRAGMA "+p.Name).Scan(&p.Got); err != nil {
				t.Fatalf("PRAGMA %s: %v", p.Name, err)
			}
			out = append(out, p)
		}
	}
	return out
}
