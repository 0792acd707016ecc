package main

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/memlimit"
	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

// `ferry serve` keeps its heap floor (internal/heapfloor) unless the
// operator set GOGC, which it then uses as given: read from the Go
// runtime's own gauge in /metrics.
func TestServeKeepsAHeapFloorUnlessGOGCIsSet(t *testing.T) {
	gh, gl := issuers.Start(t)
	tests := []struct {
		name string
		env  []string
		want func(gogc int) bool
		what string
	}{
		{"no GOGC: the floor raises it on a small heap", nil, func(p int) bool { return p > 100 }, "above 100"},
		{"GOGC=100 is the operator's", []string{"GOGC=100"}, func(p int) bool { return p == 100 }, "100"},
		{"GOGC=250 is the operator's", []string{"GOGC=250"}, func(p int) bool { return p == 250 }, "250"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env == nil && os.Getenv("GOGC") != "" {
				t.Skip("GOGC is set for the tests themselves")
			}
			srv := startServe(t, ferryproc.Config(t, repoPolicies(t), gh.URL(), gl.URL(), filepath.Join(t.TempDir(), "audit.log")), tt.env)
			if p := gogcPercent(t, srv.URL); !tt.want(p) {
				t.Errorf("go_gc_gogc_percent = %d, want %s", p, tt.what)
			}
		})
	}
}

// `ferry serve` gives the collector 90 % of its cgroup's memory limit
// (internal/memlimit) unless the operator set GOMEMLIMIT: read from the Go
// runtime's own gauge in /metrics. Without GOMEMLIMIT the expected value is
// this machine's: its cgroup's limit, or none.
func TestServeFollowsTheCgroupMemoryLimitUnlessGOMEMLIMITIsSet(t *testing.T) {
	gh, gl := issuers.Start(t)
	cfg := func() string { // each broker its own audit log
		return ferryproc.Config(t, repoPolicies(t), gh.URL(), gl.URL(), filepath.Join(t.TempDir(), "audit.log"))
	}

	srv := startServe(t, cfg(), []string{"GOMEMLIMIT=200MiB"})
	if got := runtimeGauge(t, srv.URL, "go_gc_gomemlimit_bytes"); got != 200<<20 {
		t.Errorf("with GOMEMLIMIT=200MiB: go_gc_gomemlimit_bytes = %.0f, want %d", got, 200<<20)
	}
	// The memory replay store is bounded by the same limit: a quarter of it
	// for records, a sixteenth for token ids.
	bounded := fmt.Sprintf(`"msg":"memory replay store bounded by the memory limit","memory_limit_bytes":%d,"max_token_ids":%d,"max_record_bytes":%d`,
		200<<20, (200<<20)/16/120, (200<<20)/4)
	if log := srv.Stderr(); !strings.Contains(log, bounded) {
		t.Errorf("with GOMEMLIMIT=200MiB the log lacks\n%s\n%s", bounded, log)
	}

	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set for the tests themselves")
	}
	want := float64(math.MaxInt64)
	cgroups, self := memlimit.System()
	if text, err := self(); err == nil {
		if limit, ok, err := memlimit.Limit(cgroups, string(text)); err == nil && ok {
			want = float64(int64(float64(limit) * memlimit.Fraction))
		}
	}
	srv = startServe(t, cfg(), nil)
	if got := runtimeGauge(t, srv.URL, "go_gc_gomemlimit_bytes"); got != want {
		t.Errorf("without GOMEMLIMIT: go_gc_gomemlimit_bytes = %.0f, want %.0f", got, want)
	}
	if unbounded := want == math.MaxInt64; unbounded && strings.Contains(srv.Stderr(), "memory replay store bounded") {
		t.Errorf("with no memory limit the replay store was bounded:\n%s", srv.Stderr())
	}
}

func gogcPercent(t *testing.T, base string) int {
	t.Helper()
	return int(runtimeGauge(t, base, "go_gc_gogc_percent"))
}

// runtimeGauge reads one unlabelled gauge from the broker's /metrics.
func runtimeGauge(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			p, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", name, v, err)
			}
			return p
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
