package main

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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

func gogcPercent(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_gc_gogc_percent "); ok {
			p, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("go_gc_gogc_percent %q: %v", v, err)
			}
			return int(p)
		}
	}
	t.Fatal("/metrics has no go_gc_gogc_percent")
	return 0
}
