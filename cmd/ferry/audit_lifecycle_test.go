package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/audit"
)

func TestTooLongSaysWhatToDo(t *testing.T) {
	tests := []struct {
		name string
		p    audit.PolicyLifecycle
		want string
	}{
		{"a token grant can be shortened",
			audit.PolicyLifecycle{Name: "artifacts", Kind: "token", Grants: 5, MedianGrantedSeconds: 600, SuggestedSeconds: 60},
			"artifacts: jobs hold a median 3s of the 10m granted (longest 5s): its duration is too long; about 1m would do"},
		{"an aws grant is shortened no further than STS's 15m",
			audit.PolicyLifecycle{Name: "deploy", Kind: "aws", Grants: 3, ReleasedEarly: 3, Revoked: 3, MedianGrantedSeconds: 3600, SuggestedSeconds: 120},
			"deploy: jobs hold a median 3s of the 1h granted (longest 5s): its duration is too long; about 15m would do [3 of 3 grants were released early, 3 of them revoked]"},
		{"an aws grant at its floor is to be released instead",
			audit.PolicyLifecycle{Name: "deploy", Kind: "aws", Grants: 3, MedianGrantedSeconds: 900, SuggestedSeconds: 120},
			"deploy: jobs hold a median 3s of the 15m granted (longest 5s): its duration is too long; aws credentials last at least 15m, so end them at job end instead (ferry release with revoke_on_release: true)"},
		{"a kind the report does not know keeps its suggestion",
			audit.PolicyLifecycle{Name: "gh", Kind: "github", Grants: 3, MedianGrantedSeconds: 3600, SuggestedSeconds: 180},
			"gh: jobs hold a median 3s of the 1h granted (longest 5s): its duration is too long; about 3m would do"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			granted := secs(tt.p.MedianGrantedSeconds)
			if got := tooLong(tt.p, "3s", granted, "5s"); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestPrintLifecycleFlagsAndScopes(t *testing.T) {
	var b bytes.Buffer
	printLifecycle(&b, &audit.ReportResult{
		Lifecycle: []audit.PolicyLifecycle{
			{Name: "artifacts", Kind: "token", Grants: 4, ReleasedEarly: 3, Revoked: 3, LeftToExpire: 1,
				MedianHeldSeconds: 100, MedianGrantedSeconds: 3600, LongestHeldSeconds: 120, TooLong: true, SuggestedSeconds: 180},
			{Name: "fresh", Kind: "token", Grants: 1, Live: 1},
		},
		Scopes: []audit.ScopeUsage{{Kind: "github", Scope: "contents:read", Grants: 3, Policies: []string{"docs", "publish"}}},
	})
	out := b.String()
	for _, want := range []string{
		"artifacts  4       3 (3 revoked)   1               0     1m40s        1h              2m",
		"fresh      1       0 (0 revoked)   0               1     -            -               -",
		"! artifacts: jobs hold a median 1m40s of the 1h granted (longest 2m): its duration is too long; about 3m would do",
		"github  contents:read  3       docs,publish",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
