package broker_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
)

// throttlingSTS stands in front of moto_server and answers its first
// throttle calls as STS does when throttling (400 Throttling, "Rate
// exceeded"), then passes calls on to moto. It records when each came.
type throttlingSTS struct {
	throttle int
	mu       sync.Mutex
	calls    []time.Time
	proxy    *httputil.ReverseProxy
}

func (s *throttlingSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls = append(s.calls, time.Now())
	n := len(s.calls)
	s.mu.Unlock()
	if n > s.throttle {
		s.proxy.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("x-amzn-RequestId", "throttled-"+strconv.Itoa(n))
	w.WriteHeader(http.StatusBadRequest)
	w.Write([]byte(`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>` +
		`<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>throttled</RequestId></ErrorResponse>`))
}

func (s *throttlingSTS) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls...)
}

// startThrottlingSTS points the AWS SDK's environment at a throttling
// STS in front of moto, so the broker builds its aws minter the way
// `ferry serve` does (awssts.New, from the environment).
func startThrottlingSTS(t *testing.T, throttle int) *throttlingSTS {
	t.Helper()
	m := moto.Start(t)
	target, err := url.Parse(m.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := &throttlingSTS{throttle: throttle, proxy: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_ENDPOINT_URL_STS", srv.URL)
	return s
}

// TestThrottledSTSIsRetriedWithBackoff: two throttled answers, then a
// credential. The broker's one retry policy waits between attempts, and the
// AWS SDK adds no attempts of its own.
func TestThrottledSTSIsRetriedWithBackoff(t *testing.T) {
	sts := startThrottlingSTS(t, 2)
	gh, gl := issuers.Start(t)
	r := serveBroker(t, gh, gl, "", nil)
	a := r.exchange(t, "deploy-prod", "github-environment-production", nil)
	if a.status != 200 {
		t.Fatalf("exchange through a briefly throttling STS: %d %s", a.status, a.raw)
	}
	calls := sts.times()
	if len(calls) != 3 {
		t.Fatalf("STS saw %d calls, want 3: two throttled, one that minted", len(calls))
	}
	// Jittered between half and all of 200 ms, then of 400 ms.
	for i, least := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		if gap := calls[i+1].Sub(calls[i]); gap < least {
			t.Errorf("retry %d came %s after the throttled call, want at least %s of backoff", i+1, gap, least)
		}
	}
	m := r.do(t, http.MethodGet, "/metrics", nil).raw
	for _, want := range []string{
		`ferry_upstream_retries_total{kind="aws"} 2`,
		`ferry_upstream_errors_total{code="Throttling",kind="aws",provider="AWS STS",transient="true"} 2`,
		`ferry_upstream_calls_total{kind="aws",result="ok"} 1`,
		`ferry_upstream_in_flight{kind="aws"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(m, "ferry_upstream"))
		}
	}
}

// TestPersistentThrottleIs502WithRetryAfterAfterTheBound: an STS that
// throttles every call gets three, not the nine the SDK's retryer and the
// broker's would make together, and the caller a 502 with Retry-After.
func TestPersistentThrottleIs502WithRetryAfterAfterTheBound(t *testing.T) {
	sts := startThrottlingSTS(t, 1_000)
	gh, gl := issuers.Start(t)
	r := serveBroker(t, gh, gl, "", nil)
	tok := issuers.Sign(t, gh, "github-environment-production", nil)
	a := r.do(t, http.MethodPost, "/v1/exchange", []byte(`{"policy":"deploy-prod","token":"`+tok+`"}`))
	if a.status != 502 || a.str("error") != "upstream_error" {
		t.Fatalf("exchange through a throttling STS: %d %s, want 502 upstream_error", a.status, a.raw)
	}
	if d := a.str("error_description"); !strings.Contains(d, "Throttling") || !strings.Contains(d, "gave up after 3 attempts") || strings.Contains(d, "127.0.0.1") {
		t.Errorf("description %q: want STS's code, the attempts made, and no address", d)
	}
	if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After = %q on a transient 502", a.header.Get("Retry-After"))
	}
	if n := len(sts.times()); n != 3 {
		t.Errorf("STS saw %d calls, want the bound of 3", n)
	}
	// Nothing was issued: the token is not spent.
	sts.mu.Lock()
	sts.throttle = 0
	sts.mu.Unlock()
	if a := r.do(t, http.MethodPost, "/v1/exchange", []byte(`{"policy":"deploy-prod","token":"`+tok+`"}`)); a.status != 200 {
		t.Errorf("the same token once STS recovers: %d %s", a.status, a.raw)
	}
}
