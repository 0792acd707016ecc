package trust

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/testsupport/deploypolicy"
)

// benchSet compiles n policies shaped like deploy-prod, one per
// repository, with a glob deny rule and a templated session policy, from
// one directory as a broker loads them.
func benchSet(b *testing.B, n int) *Set {
	b.Helper()
	files := make(map[string][]byte, n)
	for i := range n {
		files[filepath.Join("/etc/ferry/trustpolicies", deploypolicy.Name(i)+".yaml")] = deploypolicy.YAML(i)
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
		policy := deploypolicy.Name(i)
		allowed := sampleClaims(b, "github-environment-production", map[string]any{
			"repository":       deploypolicy.Repository(i),
			"repository_id":    deploypolicy.RepositoryID(i),
			"job_workflow_ref": deploypolicy.WorkflowRef(i),
		})
		refused := sampleClaims(b, "github-environment-production", map[string]any{
			"repository":    deploypolicy.Repository(i),
			"repository_id": deploypolicy.RepositoryID(i),
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

// BenchmarkHeldMemory reports the heap a loaded set of 10,000 policies
// keeps alive (live-MiB), after the load's garbage is collected: what a
// broker holds for its policies.
func BenchmarkHeldMemory(b *testing.B) {
	var held *Set
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		held = benchSet(b, 10000)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "live-MiB")
	}
	heldSet = held // so a -memprofile of this benchmark shows what the set holds
}

var heldSet *Set

// BenchmarkAnyOfList decides a token against a policy whose actor may be
// any of n exact values, the token's being the last written (the worst
// case for a scan). The exact values are a set, so 1 and 1,000 cost the
// same; compare the two lines of one run (docs/benchmarks.md).
func BenchmarkAnyOfList(b *testing.B) {
	for _, n := range []int{1, MaxListItems} {
		var list strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&list, "    - user-%d\n", i)
		}
		set, err := LoadFiles(map[string][]byte{"p.yaml": []byte("issuer: github\nmatch:\n  repository: acme/app\n  actor:\n" +
			list.String() + "grant:\n  token: {audience: x}\n")}, testIssuers)
		if err != nil {
			b.Fatal(err)
		}
		c := sampleClaims(b, "github-push-main", map[string]any{"actor": fmt.Sprintf("user-%d", n-1)})
		b.Run(fmt.Sprintf("alternatives=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := set.Authorize("github", "p", c); !d.Allowed {
					b.Fatalf("refused: %s", d.Reason)
				}
			}
		})
	}
}
