package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// params are the fields of a request body, from JSON or from a form. JSON
// values keep their type so a field of the wrong type can be told apart.
type params struct {
	json map[string]json.RawMessage
	form url.Values
}

// readParams decodes a request body. An empty body or JSON null gives no
// fields. A body that starts like JSON is read as JSON whatever its
// Content-Type (curl -d sends JSON as a form); a form Content-Type gives a
// form; anything else is refused.
func readParams(r *http.Request) (params, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return params{}, errBodyTooLarge
		}
		return params{}, errBodyInvalid
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return params{}, nil
	}
	if !utf8.Valid(trimmed) {
		return params{}, errBodyInvalid
	}
	if trimmed[0] == '{' || bytes.Equal(trimmed, []byte("null")) {
		fields, ok := parseFlatObject(trimmed)
		if !ok {
			if err := json.Unmarshal(trimmed, &fields); err != nil {
				return params{}, errBodyInvalid
			}
		}
		return params{json: fields}, nil
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return params{}, errBodyInvalid
	}
	form, err := url.ParseQuery(string(trimmed))
	if err != nil {
		return params{}, errBodyInvalid
	}
	return params{form: form}, nil
}

// raw returns a JSON field, treating null as absent.
func (p params) raw(name string) (json.RawMessage, bool) {
	v, ok := p.json[name]
	if !ok || string(v) == "null" {
		return nil, false
	}
	return v, true
}

// string returns a string field, "" when absent.
func (p params) string(name string) (string, error) {
	if p.form != nil {
		return p.form.Get(name), nil
	}
	v, ok := p.raw(name)
	if !ok {
		return "", nil
	}
	if plainJSONString(v) {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	if v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", paramTypeInvalid(name, "a string")
	}
	return s, nil
}

// bool returns a boolean field, false when absent. A form gives "true" or
// "false" (what PHP's and curl's form encoders send), JSON a boolean.
func (p params) bool(name string) (bool, error) {
	var text string
	if p.form != nil {
		text = p.form.Get(name)
	} else if v, ok := p.raw(name); ok {
		text = string(v)
		if text != "true" && text != "false" {
			return false, paramTypeInvalid(name, "a boolean")
		}
	}
	switch text {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, paramTypeInvalid(name, "a boolean")
}

// int64 returns an integer field, nil when absent. An integer out of the
// int64 range is a value error, a non-integer a type error.
func (p params) int64(name string) (*int64, error) {
	var text string
	if p.form != nil {
		if text = p.form.Get(name); text == "" {
			return nil, nil
		}
	} else {
		v, ok := p.raw(name)
		if !ok {
			return nil, nil
		}
		if c := v[0]; c != '-' && (c < '0' || c > '9') {
			return nil, paramTypeInvalid(name, "an integer")
		}
		text = string(v)
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return &n, nil
	}
	// Not a plain integer: maybe an exponent form (1e3), a fraction, or too big.
	f, err := strconv.ParseFloat(text, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange), math.IsNaN(f), f != math.Trunc(f):
		return nil, paramTypeInvalid(name, "an integer")
	case math.Abs(f) < 1<<62:
		n := int64(f)
		return &n, nil
	}
	return nil, tokens.ParamValueInvalid(name, "the number is out of range.")
}

// object returns an object field as compact JSON, nil when absent. A form
// carries it as JSON text.
func (p params) object(name string) ([]byte, error) {
	var v []byte
	if p.form != nil {
		if v = []byte(p.form.Get(name)); len(v) == 0 {
			return nil, nil
		}
	} else {
		raw, ok := p.raw(name)
		if !ok {
			return nil, nil
		}
		v = raw
	}
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '{' || !json.Valid(v) {
		return nil, paramTypeInvalid(name, "a JSON object")
	}
	var compact bytes.Buffer
	json.Compact(&compact, v) // valid, so it compacts
	return compact.Bytes(), nil
}

// nestedField is the one field whose value parseFlatObject reads as a
// nested object; any other non-string value is left to json.Unmarshal.
const nestedField = "metadata"

// maxNesting bounds how deep skipObject follows a nested object; deeper
// ones are left to json.Unmarshal, which has limits of its own.
const maxNesting = 32

// parseFlatObject reads the body nearly every request sends, a JSON object
// whose values are strings without escapes, such as {"ticket":"eyJ..."},
// without reflection; "metadata" may also be an object, whose bytes it
// takes as they are once encoding/json finds them valid. It gives what
// json.Unmarshal gives into the same map; ok is false for anything else,
// which json.Unmarshal then reads.
func parseFlatObject(b []byte) (fields map[string]json.RawMessage, ok bool) {
	i := 0
	space := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	// str reads a plain string at i and returns it quotes included; a key
	// must be ASCII, as json.Unmarshal would rewrite invalid UTF-8 in it.
	str := func(ascii bool) ([]byte, bool) {
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		start := i
		for i++; i < len(b); i++ {
			switch c := b[i]; {
			case c == '"':
				i++
				return b[start:i], true
			case c < 0x20 || c == '\\' || ascii && c >= 0x80:
				return nil, false
			}
		}
		return nil, false
	}
	// skip moves past whitespace, then, if c is next, past c and the
	// whitespace after it.
	skip := func(c byte) bool {
		space()
		if i >= len(b) || b[i] != c {
			return false
		}
		i++
		space()
		return true
	}
	if !skip('{') {
		return nil, false
	}
	fields = make(map[string]json.RawMessage, 2)
	if skip('}') {
		return fields, i == len(b)
	}
	for {
		key, ok := str(true)
		if !ok || !skip(':') {
			return nil, false
		}
		var value []byte
		if i < len(b) && b[i] == '{' && string(key) == `"`+nestedField+`"` {
			end, ok := skipObject(b, i)
			if !ok || !json.Valid(b[i:end]) {
				return nil, false
			}
			value, i = b[i:end], end
		} else if value, ok = str(false); !ok {
			return nil, false
		}
		fields[string(key[1:len(key)-1])] = json.RawMessage(value)
		switch {
		case skip(','):
		case skip('}'):
			return fields, i == len(b)
		default:
			return nil, false
		}
	}
}

// skipObject returns the index just past the object that starts at b[i]
// ('{'), following strings and their escapes and nesting at most
// maxNesting deep; false when the object does not end or nests deeper. It
// only finds the end: json.Valid judges what lies between.
func skipObject(b []byte, i int) (end int, ok bool) {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return 0, false
			}
		case '{', '[':
			if depth++; depth > maxNesting {
				return 0, false
			}
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// plainJSONString reports whether v is a JSON string without escapes or
// control characters, whose value is then its bytes between the quotes (the
// body was checked to be valid UTF-8).
func plainJSONString(v json.RawMessage) bool {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return false
	}
	for _, c := range v[1 : len(v)-1] {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
