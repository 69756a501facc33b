package tokens

import "encoding/json"

// AppendJSONString appends s as a JSON string, exactly as encoding/json
// writes it. Plain printable ASCII, what ids, statuses and tickets are, is
// copied as is; anything else goes through encoding/json, so its escaping
// (HTML characters, U+2028, invalid UTF-8) is kept.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // a string always encodes
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
