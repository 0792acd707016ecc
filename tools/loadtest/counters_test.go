package main

import (
	"context"
	"net/http"
	"net/http/httptest"
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
