package trust

import (
	"fmt"
	"testing"
)

// benchSet compiles n policies shaped like deploy-prod, one per
// repository, with a glob deny rule and a templated session policy.
func benchSet(b *testing.B, n int) *Set {
	b.Helper()
	files := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("deploy-%05d.yaml", i)] = []byte(fmt.Sprintf(`issuer: github
match:
  repository: acme/app-%d
  repository_id: "%d"
  ref: refs/heads/main
  environment: production
  event_name: [push, workflow_dispatch]
  job_workflow_ref: "acme/app-%d/.github/workflows/*.yml@refs/heads/main"
deny:
  - event_name: pull_request_target
  - actor: "*[bot]"
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/deploy-%d
    session_policy:
      Statement: [{Effect: Allow, Action: "s3:*", Resource: "arn:aws:s3:::artifacts/{{repository}}/*"}]
    session_tags: [repository, ref, run_id]
`, i, 100000+i, i, i))
	}
	set, err := LoadFiles(files, testIssuers)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

func BenchmarkAuthorize(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		set := benchSet(b, n)
		i := n / 2
		policy := fmt.Sprintf("deploy-%05d", i)
		allowed := sampleClaims(b, "github-environment-production", map[string]any{
			"repository":       fmt.Sprintf("acme/app-%d", i),
			"repository_id":    fmt.Sprint(100000 + i),
			"job_workflow_ref": fmt.Sprintf("acme/app-%d/.github/workflows/deploy.yml@refs/heads/main", i),
		})
		refused := sampleClaims(b, "github-environment-production", map[string]any{
			"repository":    fmt.Sprintf("acme/app-%d", i),
			"repository_id": fmt.Sprint(100000 + i),
			"ref":           "refs/heads/dev",
		})
		b.Run(fmt.Sprintf("policies=%d/allowed", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := set.Authorize("github", policy, allowed); !d.Allowed {
					b.Fatalf("refused: %s", d.Reason)
				}
			}
		})
		b.Run(fmt.Sprintf("policies=%d/refused", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := set.Authorize("github", policy, refused); d.Allowed {
					b.Fatal("allowed")
				}
			}
		})
	}
}

func BenchmarkRender(b *testing.B) {
	set := benchSet(b, 1)
	p, _ := set.Lookup("deploy-00000")
	c := sampleClaims(b, "github-environment-production", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Render(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad1000(b *testing.B) {
	for b.Loop() {
		benchSet(b, 1000)
	}
}
