package http

import (
	"encoding/json"
	"testing"
)

// TestAppendJSONMatchesEncodingJSON holds the hand-written encoder to what
// encoding/json writes for the same object.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	ms := int64(1764316800123)
	strs := []string{"", "user_123", `quote " and \ backslash`, "<script>&amp;", "tab\tnew\nline\x00\x1f\b\f",
		"ünïcödé ✓", "line\u2028sep\u2029", "bad utf8 \xff\xfe", "\x7f del", "https://app.example.com/sign-in?a=1&__clerk_ticket=x"}
	for _, s := range strs {
		for _, o := range []tokenObject{
			{Object: "sign_in_token", ID: "sit_x", UserID: s, Status: "pending", CreatedAt: ms, UpdatedAt: ms, ExpiresAt: ms},
			{Object: "sign_in_token", ID: s, UserID: "u", Status: "accepted", Token: s, URL: s, OrgID: s,
				CreatedAt: -1, UpdatedAt: 0, ExpiresAt: ms, AcceptedAt: &ms, RevokedAt: &ms},
		} {
			type plain tokenObject // no appendJSON, so encoding/json uses reflection
			want, err := json.Marshal(plain(o))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.appendJSON(nil); string(got) != string(want) {
				t.Errorf("appendJSON(%+v)\n got %s\nwant %s", o, got, want)
			}
		}
	}
}
