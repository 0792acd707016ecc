package audit

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/claims"
)

// lifeLog writes grants and releases as the broker does: an allow with the
// credential's expiry, and later a release record under the same request
// id.
type lifeLog struct {
	t   *testing.T
	buf bytes.Buffer
	l   *Log
	n   int
}

func newLifeLog(t *testing.T) *lifeLog {
	ll := &lifeLog{t: t}
	ll.l = New(&ll.buf, Genesis)
	return ll
}

func (ll *lifeLog) write(r Record) {
	ll.t.Helper()
	if _, err := ll.l.Write(context.Background(), r); err != nil {
		ll.t.Fatal(err)
	}
}

// grant records an allow at `at` for `lifetime` and returns its request id.
func (ll *lifeLog) grant(policy, kind string, at time.Time, lifetime time.Duration, scope ...string) string {
	ll.n++
	id := fmt.Sprintf("req-%03d", ll.n)
	ll.write(Record{Time: at, RequestID: id, Decision: Allow, Policy: policy, Subject: "repo:acme/app",
		Claims:     []claims.Pair{{Name: "repository", Value: "acme/app"}, {Name: "run_id", Value: "1"}},
		Credential: &Credential{Type: kind, ID: "id-" + id, ExpiresAt: at.Add(lifetime), Scope: scope}})
	return id
}

func (ll *lifeLog) release(id, policy string, at time.Time, held time.Duration, revoked, expired, repeat bool) {
	ll.write(Record{Time: at, RequestID: id, Decision: Release, Policy: policy, Subject: "repo:acme/app",
		Claims:   []claims.Pair{{Name: "repository", Value: "acme/app"}, {Name: "run_id", Value: "1"}},
		Released: &Released{Revoked: revoked, HeldSeconds: int64(held / time.Second), Expired: expired, Repeat: repeat}})
}

func (ll *lifeLog) refusedRelease(id string, at time.Time) {
	ll.write(Record{Time: at, RequestID: id, Decision: Release, Error: "access_denied", Reason: "release_token does not belong to that request"})
}

func TestReportLifecycleHeldVersusGranted(t *testing.T) {
	now := t0.Add(10 * 24 * time.Hour)
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	ll := newLifeLog(t)

	// deploy-prod: 1h grants, jobs release after about 2 minutes: too long.
	for i := range 4 {
		start := at(time.Duration(48-i) * time.Hour)
		id := ll.grant("deploy-prod", "aws", start, time.Hour)
		ll.release(id, "deploy-prod", start.Add(time.Duration(90+10*i)*time.Second), time.Duration(90+10*i)*time.Second, true, false, false)
		if i == 0 {
			// A second release of the same grant changes nothing.
			ll.release(id, "deploy-prod", start.Add(5*time.Minute), 5*time.Minute, true, false, true)
		}
	}
	// artifacts: 10m tokens, one released after 8m (recorded only), one
	// left to expire, one released after it expired, one still live.
	a1 := ll.grant("artifacts", "token", at(5*time.Hour), 10*time.Minute)
	ll.release(a1, "artifacts", at(5*time.Hour).Add(8*time.Minute), 8*time.Minute, false, false, false)
	ll.grant("artifacts", "token", at(4*time.Hour), 10*time.Minute)
	a3 := ll.grant("artifacts", "token", at(3*time.Hour), 10*time.Minute)
	ll.release(a3, "artifacts", at(2*time.Hour), 10*time.Minute, false, true, false)
	ll.grant("artifacts", "token", at(2*time.Minute), 10*time.Minute)
	// A refused release counts as a release record but ends nothing.
	ll.refusedRelease(a3, at(time.Hour))
	ll.refusedRelease("unknown", at(time.Hour))
	// GitHub tokens by permission.
	ll.grant("publish", "github", at(30*time.Minute), time.Hour, "contents:read", "packages:write")
	ll.grant("publish", "github", at(20*time.Minute), time.Hour, "contents:read")
	ll.grant("docs", "github", at(10*time.Minute), time.Hour, "contents:read")
	// Outside the window: not a grant of the report.
	ll.grant("deploy-prod", "aws", now.Add(-40*24*time.Hour), time.Hour)

	res, err := Report(bytes.NewReader(ll.buf.Bytes()), ReportOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if res.ChainError != "" {
		t.Fatalf("chain: %s", res.ChainError)
	}
	if res.Releases != 9 {
		t.Errorf("Releases = %d, want 9 (6 that took effect, 1 repeat, 2 refused)", res.Releases)
	}
	if res.Allows != 11 {
		t.Errorf("Allows = %d, want 11: a release is not an allow", res.Allows)
	}
	want := []PolicyLifecycle{
		{Name: "artifacts", Kind: "token", Grants: 4, ReleasedEarly: 1, LeftToExpire: 2, Live: 1,
			MedianHeldSeconds: 600, MedianGrantedSeconds: 600, LongestHeldSeconds: 600},
		{Name: "deploy-prod", Kind: "aws", Grants: 4, ReleasedEarly: 4, Revoked: 4,
			MedianHeldSeconds: 100, MedianGrantedSeconds: 3600, LongestHeldSeconds: 120,
			TooLong: true, SuggestedSeconds: 180},
		{Name: "docs", Kind: "github", Grants: 1, Live: 1},
		{Name: "publish", Kind: "github", Grants: 2, Live: 2},
	}
	if !reflect.DeepEqual(res.Lifecycle, want) {
		t.Errorf("Lifecycle =\n%+v\nwant\n%+v", res.Lifecycle, want)
	}
	wantScopes := []ScopeUsage{
		{Kind: "github", Scope: "contents:read", Grants: 3, Policies: []string{"docs", "publish"}},
		{Kind: "github", Scope: "packages:write", Grants: 1, Policies: []string{"publish"}},
	}
	if !reflect.DeepEqual(res.Scopes, wantScopes) {
		t.Errorf("Scopes = %+v, want %+v", res.Scopes, wantScopes)
	}
	// Releases are not requests: acme/app's releases make no repeated
	// finding of their own.
	for _, r := range res.Repeated {
		t.Errorf("unexpected repeated finding %+v", r)
	}
}

func TestReportLifecycleFlagsOnlyWithEnoughFinishedGrants(t *testing.T) {
	now := t0.Add(24 * time.Hour)
	tests := []struct {
		name     string
		held     []time.Duration // of 1h grants, each released early
		expired  int             // 1h grants left to expire
		wantFlag bool
	}{
		{"three short holds of an hour", []time.Duration{2 * time.Minute, 3 * time.Minute, time.Minute}, 0, true},
		{"two short holds are too few to judge", []time.Duration{2 * time.Minute, 3 * time.Minute}, 0, false},
		{"holds of a quarter of the grant are flagged", []time.Duration{15 * time.Minute, 15 * time.Minute, 15 * time.Minute}, 0, true},
		{"holds of a little over a quarter are not", []time.Duration{16 * time.Minute, 16 * time.Minute, 16 * time.Minute}, 0, false},
		{"jobs that never release are held whole", nil, 5, false},
		{"a median that expires is not short", []time.Duration{time.Minute}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ll := newLifeLog(t)
			for i, h := range tt.held {
				start := now.Add(-time.Duration(10+i) * time.Hour)
				id := ll.grant("p", "aws", start, time.Hour)
				ll.release(id, "p", start.Add(h), h, true, false, false)
			}
			for i := range tt.expired {
				ll.grant("p", "aws", now.Add(-time.Duration(20+i)*time.Hour), time.Hour)
			}
			res, err := Report(bytes.NewReader(ll.buf.Bytes()), ReportOptions{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Lifecycle) != 1 {
				t.Fatalf("Lifecycle = %+v", res.Lifecycle)
			}
			if got := res.Lifecycle[0].TooLong; got != tt.wantFlag {
				t.Errorf("TooLong = %v, want %v (%+v)", got, tt.wantFlag, res.Lifecycle[0])
			}
		})
	}
}

func TestReleaseRecordsRoundTripAndChain(t *testing.T) {
	ll := newLifeLog(t)
	id := ll.grant("p", "token", t0, 10*time.Minute, "aud:x")
	ll.release(id, "p", t0.Add(time.Minute), time.Minute, true, false, false)
	s, err := Verify(bytes.NewReader(ll.buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if s.Allows != 1 || s.Releases != 1 || s.Records != 2 {
		t.Errorf("Verify summary = %+v", s)
	}
	lines := bytes.Split(bytes.TrimSpace(ll.buf.Bytes()), []byte("\n"))
	var rec Record
	if err := rec.UnmarshalJSON(lines[1]); err != nil {
		t.Fatal(err)
	}
	if rec.Decision != Release || rec.RequestID != id || rec.Released == nil || !rec.Released.Revoked || rec.Released.HeldSeconds != 60 {
		t.Errorf("release record = %+v (released %+v)", rec, rec.Released)
	}
	if rec.Claim("released") != "" {
		t.Error(`"released" was read back as an identifying claim`)
	}
	if !bytes.Contains(lines[0], []byte(`"scope":["aud:x"]`)) {
		t.Errorf("grant record lacks its scope: %s", lines[0])
	}
}

func TestWriteRefusesUnknownDecisionsButTakesRelease(t *testing.T) {
	l := New(&bytes.Buffer{}, Genesis)
	for _, d := range Decisions() {
		if _, err := l.Write(context.Background(), Record{Decision: d}); err != nil {
			t.Errorf("Write(%q): %v", d, err)
		}
	}
	if _, err := l.Write(context.Background(), Record{Decision: "revoke"}); err == nil {
		t.Error(`Write accepted decision "revoke"`)
	}
}
