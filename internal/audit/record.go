package audit

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/ferry-broker/ferry/internal/claims"
)

// Decision values.
const (
	Allow = "allow"
	Deny  = "deny"
	// Release is a credential ended at job end (POST /v1/release), or a
	// refused attempt to: its RequestID is the grant's, so the grant's
	// allow and its release share one id.
	Release = "release"
)

// Record is one decision, allow or deny. It never holds a token, a secret
// key, a session token or an access token: Credential carries only ids.
//
// The contract's fields are always present, empty when they do not apply,
// so a consumer with a fixed schema finds every key on every line; the
// identifying claims appear only when the token carried them, since a
// GitHub record has no GitLab claims and the reverse.
type Record struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Decision  string    `json:"decision"`
	Error     string    `json:"error"`  // the API error code on deny
	Reason    string    `json:"reason"` // why: the failing claim, the deny rule, the upstream message
	Rule      string    `json:"rule"`   // the deciding rule, e.g. "match.ref" or "deny[0]"
	Policy    string    `json:"policy"`
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`

	// Claims are the token's identifying claims (repository, run_id;
	// project_path, pipeline_id…: which ones is the platform's business,
	// see internal/platform). They are written as members of the record
	// itself, in order, after subject.
	Claims []claims.Pair `json:"-"`

	Credential *Credential `json:"credential"` // null on deny
	ClientIP   string      `json:"client_ip"`
	// Released says what a release did; only on a release's record.
	Released *Released `json:"released,omitempty"`

	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// Credential identifies what was minted without revealing it.
type Credential struct {
	Type      string    `json:"type"`         // the grant's kind: aws, gcp, token…
	ID        string    `json:"id,omitempty"` // AWS access key id, token jti, service account
	ExpiresAt time.Time `json:"expires_at"`
	// Scope is what the credential may do, as its kind names it
	// ("contents:read"), when the kind says more than the policy.
	Scope []string `json:"scope,omitempty"`
}

// Released is what one release did to its grant's credential.
type Released struct {
	// Revoked is set when the credential stopped working at the release,
	// not at its expiry.
	Revoked bool `json:"revoked"`
	// HeldSeconds is how long the job held the credential: from its grant
	// to its release, or to its expiry when it was released late.
	HeldSeconds int64 `json:"held_seconds"`
	// GrantedSeconds is the lifetime it was granted, for comparison.
	GrantedSeconds int64 `json:"granted_seconds"`
	// Expired is set when the release came after the credential expired.
	Expired bool `json:"expired,omitempty"`
	// Repeat is set on a release of a grant already released: it changed
	// nothing.
	Repeat bool `json:"repeat,omitempty"`
	// Detail says what happened, in words.
	Detail string `json:"detail,omitempty"`
}

// Claim returns the identifying claim of that name, "" when the record has
// none.
func (r *Record) Claim(name string) string {
	for _, c := range r.Claims {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// fields is Record without its methods, for the default encoding of the
// fixed members.
type fields Record

// members are the record's fixed member names: a claim of one of these
// names is not written, so it can never stand in for one.
var members = map[string]bool{
	"time": true, "request_id": true, "decision": true, "error": true, "reason": true, "rule": true,
	"policy": true, "issuer": true, "subject": true, "credential": true, "client_ip": true, "released": true, "prev": true, "hash": true,
}

// MarshalJSON writes the fixed members in order with the identifying
// claims after subject (appendRecord).
func (r Record) MarshalJSON() ([]byte, error) {
	return appendRecord(make([]byte, 0, 1024), &r)
}

// UnmarshalJSON reads the fixed members, and every other string member as
// an identifying claim, in the order written.
func (r *Record) UnmarshalJSON(data []byte) error {
	var f fields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		var s string
		if members[name] || json.Unmarshal(v, &s) != nil {
			continue
		}
		f.Claims = append(f.Claims, claims.Pair{Name: name, Value: s})
	}
	*r = Record(f)
	return nil
}
