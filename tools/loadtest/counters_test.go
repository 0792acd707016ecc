package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

func TestCountersFromMetrics(t *testing.T) {
	body := "# HELP process_cpu_seconds_total x\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n" +
		"ferry_audit_records_total 3000\nferry_audit_commits_total 250\nferry_audit_records_total_other 1\n" +
		"ferry_exchanges_total{policy=\"p\"} 9\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()
	got := readCounters(context.Background(), srv.Client(), srv.URL)
	if got != (counters{12.5, 3000, 250}) {
		t.Fatalf("readCounters = %+v", got)
	}
	before := counters{10.5, 1000, 100}
	cpu, perFsync := perRequest(before, got, 1000)
	if cpu != 2*time.Millisecond || perFsync != 2000.0/150 {
		t.Errorf("perRequest = %s, %.2f; want 2ms, 13.33", cpu, perFsync)
	}
}

func TestCountersMissingReadAsUnknown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("process_cpu_seconds_total 1\n"))
	}))
	defer srv.Close()
	got := readCounters(context.Background(), srv.Client(), srv.URL)
	if got != (counters{1, -1, -1}) {
		t.Fatalf("readCounters = %+v, want the audit counters unknown", got)
	}
	if _, perFsync := perRequest(got, got, 10); perFsync != 0 {
		t.Errorf("records per fsync %v from missing counters, want 0 (shown as -)", perFsync)
	}
	if c := readCounters(context.Background(), srv.Client(), "http://127.0.0.1:1"); c != (counters{-1, -1, -1}) {
		t.Errorf("an unreachable broker's counters = %+v", c)
	}
}

func TestCPURatio(t *testing.T) {
	cpus := map[string]time.Duration{"deny": 100 * time.Microsecond, "deny-10k": 122 * time.Microsecond}
	if got := cpuRatio(cpus, "deny-10k", "deny"); got != "; 1.22x by CPU a request" {
		t.Errorf("cpuRatio = %q", got)
	}
	if got := cpuRatio(cpus, "token-redis", "token"); got != "" {
		t.Errorf("cpuRatio without figures = %q, want nothing", got)
	}
}

func TestResidentSetSaysTheAnonymousPart(t *testing.T) {
	status := "Name:\tferry\nVmRSS:\t   56624 kB\nRssAnon:\t   33120 kB\nRssFile:\t   23504 kB\n"
	if got, want := residentSet(status), "56624 kB (anonymous 33120 kB)"; got != want {
		t.Errorf("residentSet = %q, want %q", got, want)
	}
	if got := residentSet("Name:\tferry\n"); got != "unknown (anonymous unknown)" {
		t.Errorf("residentSet of a status without the fields = %q", got)
	}
}

func TestParseSchedstat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"123456789 2000 31\n", 123456789 * time.Nanosecond, true},
		{"0 0 0", 0, true},
		{"", 0, false},
		{"12 34", 0, false},
		{"-5 1 1", 0, false},
		{"x 1 1", 0, false},
	} {
		got, err := parseSchedstat(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestProcessCPUReadsARunningProcess(t *testing.T) {
	before := processCPU(os.Getpid())
	for i := 0; processCPU(os.Getpid()) == before && i < 1e6; i++ {
	}
	if after := processCPU(os.Getpid()); before < 0 || after <= before {
		t.Errorf("processCPU of this test went from %v to %v, want it to grow", before, after)
	}
	if got := processCPU(-1); got != -1 {
		t.Errorf("processCPU of no process = %v, want -1", got)
	}
}

func TestHelperCPUPerRequest(t *testing.T) {
	if got := perRequestCPU(time.Second, 3*time.Second, 1000); got != 2*time.Millisecond {
		t.Errorf("perRequestCPU = %v, want 2ms", got)
	}
	for _, tt := range [][3]time.Duration{{-1, time.Second, 10}, {time.Second, -1, 10}, {time.Second, 2 * time.Second, 0}} {
		if got := perRequestCPU(tt[0], tt[1], int(tt[2])); got != 0 {
			t.Errorf("perRequestCPU(%v) = %v, want 0 (unknown)", tt, got)
		}
	}
	cpus := map[string]time.Duration{"token": 200 * time.Microsecond, "token-redis": 220 * time.Microsecond}
	helpers := map[string]time.Duration{"token-redis": 30 * time.Microsecond}
	if got, want := withHelper(cpus, helpers, "token-redis", "token", "redis-server"), "; redis-server adds 30µs a request, 1.25x with it"; got != want {
		t.Errorf("withHelper = %q, want %q", got, want)
	}
	if got := withHelper(cpus, map[string]time.Duration{}, "token-redis", "token", "redis-server"); got != "" {
		t.Errorf("withHelper without the helper's figure = %q, want nothing", got)
	}
	var none *broker
	if got := none.helperTime(); got != -1 {
		t.Errorf("helperTime of no broker = %v, want -1", got)
	}
}
