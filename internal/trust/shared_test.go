package trust

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/mint/awssts"
)

func TestPoliciesOfOneShapeShareWhatTheyRepeat(t *testing.T) {
	files := map[string]string{}
	for i := range 3 {
		files[fmt.Sprintf("p%d.yaml", i)] = fmt.Sprintf(`issuer: github
match:
  repository: acme/app-%d
  ref: refs/heads/main
  job_workflow_ref: "acme/app-%d/.github/workflows/*.yml@refs/heads/main"
deny: [{actor: "*[bot]"}]
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/deploy-%d
    session_policy: {Statement: [{Effect: Allow, Action: "s3:*", Resource: "arn:aws:s3:::b/{{repository}}/*"}]}
`, i, i, i)
	}
	set := mustLoad(t, files)
	p0, _ := set.Lookup("p0")
	p1, _ := set.Lookup("p1")
	if p0.deny[0].conds[0] != p1.deny[0].conds[0] || p0.match[1] != p1.match[1] {
		t.Error("identical conditions are not shared")
	}
	if p0.match[0] == p1.match[0] || p0.match[2] == p1.match[2] {
		t.Error("different conditions are shared")
	}
	if p0.Grant.(*awssts.Spec).SessionPolicy != p1.Grant.(*awssts.Spec).SessionPolicy {
		t.Error("the session policies differ")
	}
	// Sharing changes no decision and no rendering.
	for i, name := range []string{"p0", "p1", "p2"} {
		repo := fmt.Sprintf("acme/app-%d", i)
		c := sampleClaims(t, "github-push-main", map[string]any{"repository": repo,
			"job_workflow_ref": repo + "/.github/workflows/deploy.yml@refs/heads/main"})
		d := set.Decide("github", name, c)
		if !d.Allowed {
			t.Fatalf("%s refused its own repository: %s", name, d.Reason)
		}
		if got, want := d.Grant.(*awssts.Spec).SessionPolicy, `arn:aws:s3:::b/`+repo+`/*`; !strings.Contains(got, want) {
			t.Errorf("%s rendered %s, want it to name %s", name, got, want)
		}
		if other := fmt.Sprintf("p%d", (i+1)%3); set.Decide("github", other, c).Allowed {
			t.Errorf("%s's token reached %s", name, other)
		}
	}
}
