package audit

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ferry-broker/ferry/internal/claims"
)

// appendRecord appends r's JSON to dst: the members in Record's order with
// the identifying claims after subject, every string escaped exactly as
// encoding/json escapes it, so a line reads as json.Marshal would have
// written it. It is written out by hand because it runs once for every
// decision: reflection cost more than the rest of the record together.
func appendRecord(dst []byte, r *Record) ([]byte, error) {
	dst = append(dst, `{"time":`...)
	dst = appendTime(dst, r.Time)
	dst = appendMember(dst, "request_id", r.RequestID)
	dst = appendMember(dst, "decision", r.Decision)
	dst = appendMember(dst, "error", r.Error)
	dst = appendMember(dst, "reason", r.Reason)
	dst = appendMember(dst, "rule", r.Rule)
	dst = appendMember(dst, "policy", r.Policy)
	dst = appendMember(dst, "issuer", r.Issuer)
	dst = appendMember(dst, "subject", r.Subject)
	for i, c := range r.Claims {
		if members[c.Name] || c.Name == "" || claimSeen(r.Claims[:i], c.Name) {
			continue
		}
		dst = append(dst, ',')
		dst = appendString(dst, c.Name)
		dst = append(dst, ':')
		dst = appendString(dst, c.Value)
	}
	dst = append(dst, `,"credential":`...)
	if c := r.Credential; c == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, `{"type":`...)
		dst = appendString(dst, c.Type)
		if c.ID != "" {
			dst = appendMember(dst, "id", c.ID)
		}
		dst = append(dst, `,"expires_at":`...)
		dst = appendTime(dst, c.ExpiresAt)
		if len(c.Scope) > 0 {
			dst = append(dst, `,"scope":[`...)
			for i, s := range c.Scope {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendString(dst, s)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	dst = appendMember(dst, "client_ip", r.ClientIP)
	if r.Released != nil {
		// Only on a release's record: rare enough for encoding/json.
		b, err := json.Marshal(r.Released)
		if err != nil {
			return nil, fmt.Errorf("encode audit record: %w", err)
		}
		dst = append(dst, `,"released":`...)
		dst = append(dst, b...)
	}
	dst = appendMember(dst, "prev", r.Prev)
	dst = appendMember(dst, "hash", r.Hash)
	return append(dst, '}'), nil
}

func claimSeen(before []claims.Pair, name string) bool {
	for _, c := range before {
		if c.Name == name {
			return true
		}
	}
	return false
}

func appendMember(dst []byte, name, value string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, value)
}

// appendTime writes t as time.Time's MarshalJSON does.
func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does with
// HTML escaping on: <, > and & as \u003c, \u003e, \u0026; U+2028 and
// U+2029 escaped; invalid UTF-8 as U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
