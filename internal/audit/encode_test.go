package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/claims"
)

// referenceRecord is how the record used to be written: encoding/json for
// the fixed members, the claims spliced in before credential.
func referenceRecord(t testing.TB, r Record) []byte {
	t.Helper()
	b, err := json.Marshal(fields(r))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte(`,"credential":`))
	var out []byte
	out = append(out, b[:at]...)
	seen := map[string]bool{}
	for _, c := range r.Claims {
		if members[c.Name] || seen[c.Name] || c.Name == "" {
			continue
		}
		seen[c.Name] = true
		name, _ := json.Marshal(c.Name)
		value, _ := json.Marshal(c.Value)
		out = append(out, ',')
		out = append(out, name...)
		out = append(out, ':')
		out = append(out, value...)
	}
	return append(out, b[at:]...)
}

func TestRecordEncodesAsEncodingJSONWould(t *testing.T) {
	full := sample(0)
	full.Credential.Scope = []string{"contents:read", "issues:write"}
	full.Released = &Released{Revoked: true, HeldSeconds: 120, GrantedSeconds: 3600, Detail: "deleted <at> GitHub & co"}
	full.Claims = append(full.Claims, claims.Pair{Name: "policy", Value: "shadow"}, claims.Pair{Name: "repository", Value: "again"}, claims.Pair{Name: "", Value: "x"})
	for name, r := range map[string]Record{
		"an allow":       sample(0),
		"a deny":         sample(1),
		"every field":    full,
		"hostile text":   {Time: time.Unix(1, 5).UTC(), Reason: "a\"b\\c\n\t\r\b\f\x00\x1f<>&\u2028\u2029\xff\xfe é 😀", Subject: "</script>"},
		"an empty one":   {},
		"a far-off time": {Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		got, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceRecord(t, r); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

// FuzzRecordEncoding: whatever the text, the record reads as encoding/json
// would have written it.
func FuzzRecordEncoding(f *testing.F) {
	f.Add("deny", "claim \"ref\" = <x>", "repository", "acme/app\u2028", "aws", int64(1700000000))
	f.Add("\xff", "\x00\x7f", "policy", "\xed\xa0\x80", "", int64(0))
	f.Fuzz(func(t *testing.T, decision, reason, claim, value, kind string, at int64) {
		r := Record{Time: time.Unix(at%253402300799, 0).UTC(), Decision: decision, Reason: reason,
			Claims: []claims.Pair{{Name: claim, Value: value}}}
		if kind != "" {
			r.Credential = &Credential{Type: kind, ID: value, ExpiresAt: r.Time, Scope: []string{reason}}
		}
		got, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if want := referenceRecord(t, r); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}
