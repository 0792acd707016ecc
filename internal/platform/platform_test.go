package platform_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
)

func TestCheckRefusesPlatformClaimsOfTheWrongType(t *testing.T) {
	platforms := registry.Platforms()
	tests := []struct {
		name   string
		sample string
		edits  map[string]any
		want   string // the refused claim, "" when accepted
	}{
		{"GitHub's claims as GitHub sends them", "github-push-main", nil, ""},
		{"GitLab's claims as GitLab sends them", "gitlab-protected-deploy", nil, ""},
		{"a GitLab id sent as a number", "gitlab-protected-deploy", map[string]any{"project_id": float64(4242)}, ""},
		{"a repository sent as a number", "github-push-main", map[string]any{"repository": float64(7)}, "repository"},
		{"a repository sent as a list", "github-push-main", map[string]any{"repository": []any{"acme/app"}}, "repository"},
		{"a ref sent as an object", "github-push-main", map[string]any{"ref": map[string]any{"x": 1}}, "ref"},
		{"a run id that is not an integer", "github-push-main", map[string]any{"run_id": "12a"}, "run_id"},
		{"a run id sent as a boolean", "github-push-main", map[string]any{"run_id": true}, "run_id"},
		{"a project path sent as a number", "gitlab-protected-deploy", map[string]any{"project_path": float64(1)}, "project_path"},
		// Rules apply by name: leaving out the marker does not dodge them.
		{"a GitLab claim in a token with no project_path", "github-push-main", map[string]any{"pipeline_id": "x"}, "pipeline_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := platforms.Check(granttest.Claims(t, tt.sample, tt.edits))
			var te *claims.TypeError
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (!errors.As(err, &te) || te.Claim != tt.want):
				t.Errorf("err = %v, want a type error on %s", err, tt.want)
			}
		})
	}
}

func TestIdentifyAndJobFollowTheTokensPlatform(t *testing.T) {
	platforms := registry.Platforms()
	gh := granttest.Claims(t, "github-push-main", nil)
	if got := platforms.Identify(gh); len(got) == 0 || got[0] != (claims.Pair{Name: "repository", Value: "acme/app"}) {
		t.Errorf("GitHub identity = %v", got)
	}
	if j := platforms.Job(gh); j.Who != "acme/app" || j.Run != "11223344556" || j.ID != "11223344556" || j.Subject != "repo:acme/app:ref:refs/heads/main" {
		t.Errorf("GitHub job = %+v", j)
	}
	gl := granttest.Claims(t, "gitlab-protected-deploy", nil)
	for _, c := range platforms.Identify(gl) {
		if c.Name == "repository" || c.Name == "run_id" {
			t.Errorf("a GitLab record names a GitHub claim: %v", c)
		}
	}
	if j := platforms.Job(gl); j.Who != "group/app" || j.Run != "998877" || j.ID != "5566778" || j.Subject != "project_path:group/app:ref_type:branch:ref:main" {
		t.Errorf("GitLab job = %+v", j)
	}
	unknown := granttest.Claims(t, "github-push-main", map[string]any{"repository": nil})
	if got, j := platforms.Identify(unknown), platforms.Job(unknown); got != nil || j.Who != unknown.Subject || j.Run != "" {
		t.Errorf("a token of no platform: %v, %+v", got, j)
	}
	// An audit record's claims name the same job.
	if j := platforms.JobOfClaims(gl.Subject, platforms.Identify(gl)); j.Who != "group/app" || j.Run != "998877" {
		t.Errorf("job of a record's claims = %+v", j)
	}
}

func TestPinsAndThePlatformsAPolicyIsFor(t *testing.T) {
	platforms := registry.Platforms()
	if got := platforms.PinList(); got != "repository, repository_id, repository_owner, repository_owner_id, project_path, project_id, namespace_path, namespace_id or sub" {
		t.Errorf("PinList = %q", got)
	}
	for claim, path := range map[string]bool{"repository": true, "repository_id": false, "namespace_path": true, "sub": true} {
		if p, ok := platforms.Pin(claim); !ok || p.Path != path {
			t.Errorf("Pin(%s) = %+v, %v", claim, p, ok)
		}
	}
	if _, ok := platforms.Pin("ref"); ok {
		t.Error("ref pins an identity")
	}
	names := func(s platform.Set) []string {
		var out []string
		for _, p := range s {
			out = append(out, p.Name)
		}
		return out
	}
	tests := []struct {
		issuer string
		match  []string
		want   []string
	}{
		{"github", []string{"repository", "ref"}, []string{"github"}},
		{"ghes", []string{"project_id"}, []string{"gitlab"}},
		{"gitlab-self-managed", []string{"sub"}, []string{"gitlab"}},
		{"corp", []string{"sub"}, []string{"github"}}, // the default
	}
	for _, tt := range tests {
		if got := names(platforms.For(tt.issuer, tt.match)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("For(%s, %v) = %v, want %v", tt.issuer, tt.match, got, tt.want)
		}
	}
}
