package broker_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

// TestServeExposesIssuerKeyFreshness runs a broker with one issuer up and
// one down, through Serve (which fetches keys and starts the scheduled
// refetches) and real HTTP: /metrics shows each issuer's keys and failed
// fetches, and /readyz stays 200 "degraded", naming the issuer that is down.
func TestServeExposesIssuerKeyFreshness(t *testing.T) {
	gh, gl := issuers.Start(t)
	gl.SetDown(true)

	base := serveBroker(t, gh, gl, "", nil).base

	want := []string{
		`ferry_issuer_keys{issuer="github"} 1`,
		`ferry_issuer_keys{issuer="gitlab"} 0`,
		`ferry_issuer_key_refresh_failures_total{issuer="github"} 0`,
		`ferry_issuer_key_refresh_failures_total{issuer="gitlab"} 1`,
		`ferry_issuer_keys_last_success_timestamp_seconds{issuer="gitlab"} 0`,
		`ferry_issuer_keys_stale{issuer="github"} 0`,
	}
	var metrics string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		metrics = get(t, base+"/metrics", http.StatusOK)
		if containsAll(metrics, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks some of %q:\n%s", want, grepLines(metrics, "ferry_issuer_"))
		}
	}
	if !strings.Contains(metrics, `ferry_issuer_keys_last_success_timestamp_seconds{issuer="github"} 1.`) {
		t.Errorf("github's last success is not a current Unix time:\n%s", grepLines(metrics, "last_success"))
	}

	var ready struct {
		Status   string   `json:"status"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(get(t, base+"/readyz", http.StatusOK)), &ready); err != nil {
		t.Fatal(err)
	}
	if ready.Status != "degraded" || len(ready.Problems) != 1 || !strings.Contains(ready.Problems[0], `"gitlab"`) {
		t.Errorf("/readyz = %+v, want degraded naming gitlab only", ready)
	}
}

func get(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, status)
	}
	return string(body)
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
