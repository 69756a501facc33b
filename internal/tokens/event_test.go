package tokens

import (
	"math"
	"testing"
)

// TestEventIDs: ids round-trip, sort as their positions do, and anything
// else is refused.
func TestEventIDs(t *testing.T) {
	positions := [][2]uint64{{0, 0}, {0, 1}, {0, 61}, {0, 62}, {1, 0}, {1, 5}, {744, 3}, {744, 1 << 40}, {1 << 40, 0}, {math.MaxInt64, math.MaxInt64}}
	prev := ""
	for _, p := range positions {
		id := NewEventID(p[0], p[1])
		if len(id) != len(EventIDPrefix)+22 {
			t.Errorf("NewEventID(%v) = %q: length %d", p, id, len(id))
		}
		if id <= prev {
			t.Errorf("NewEventID(%v) = %q does not sort after %q", p, id, prev)
		}
		prev = id
		major, minor, ok := ParseEventID(id)
		if !ok || major != p[0] || minor != p[1] {
			t.Errorf("ParseEventID(%q) = %d, %d, %v; want %v", id, major, minor, ok, p)
		}
	}
	for _, bad := range []string{"", "evt_", "evt_0000000000000000000000x", "sit_0000000000000000000000",
		"evt_000000000000000000000-", "evt_zzzzzzzzzzzzzzzzzzzzzz", "evt_AzL8n0Y58m800000000000"} {
		if _, _, ok := ParseEventID(bad); ok {
			t.Errorf("ParseEventID(%q) accepted", bad)
		}
	}
}

func TestValidEventType(t *testing.T) {
	for typ, want := range map[string]bool{
		"sign_in_token.created": true, "actor_token.code_failed": true, "sign_in_token.redeem_refused": true,
		"sign_in_token.": false, "token.created": false, "sign_in_token.exploded": false, "": false,
	} {
		if got := ValidEventType(typ); got != want {
			t.Errorf("ValidEventType(%q) = %v, want %v", typ, got, want)
		}
	}
}
