package http

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
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
				CreatedAt: -1, UpdatedAt: 0, ExpiresAt: ms, AcceptedAt: &ms, RevokedAt: &ms,
				RedirectURL: s, Metadata: json.RawMessage(`{"b": [1, 2], "a":"<&>\u2028", "s":` + strconvQuote(s) + `}`)},
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

// FuzzParseFlatObject holds the fast body reader to json.Unmarshal: what it
// accepts, it reads the same.
func FuzzParseFlatObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"ticket":"eyJ.a.b"}`, ` { "user_id" : "u" , "org_id":"o" } `,
		`{"a":"1","a":"2"}`, `{"a":1}`, `{"a":"\u00e9"}`, `{"a":"é"}`, `{"a":"x"}x`, `{"a":"x",}`, `null`,
		`{"metadata":{}}`, `{"user_id":"u","metadata":{"a":{"b":[1,"}",null]},"c":"\"{"}}`, `{"metadata":{"a":}}`,
		`{"metadata":{"a":1}`, `{"metadata":{"a":1}},"x":"y"}`, `{"metadata":{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}`,
		`{"metadata":[1]}`, `{"other":{"a":1}}`, `{"metadata" : { "a" : "\\" } , "b":"c"}`, `{"metadata":{"a":"\ud800"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseFlatObject(b)
		if !ok {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("parseFlatObject(%q) accepted what json.Unmarshal refuses: %v", b, err)
		}
		if len(got) != len(want) {
			t.Fatalf("parseFlatObject(%q) = %q, want %q", b, got, want)
		}
		for k, v := range want {
			if string(got[k]) != string(v) {
				t.Fatalf("parseFlatObject(%q)[%q] = %q, want %q", b, k, got[k], v)
			}
			if plainJSONString(v) && utf8.Valid(v) {
				var s string
				if err := json.Unmarshal(v, &s); err != nil || s != string(v[1:len(v)-1]) {
					t.Fatalf("plain string %q decodes to %q (%v)", v, s, err)
				}
			}
		}
	})
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `"\`, "<>&", "\u2028\u2029", "\x00\x1f\x7f", "\xff\xfe", "ünï"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("user_123")
	f.Add("<&>\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// strconvQuote is s as a JSON string.
func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
