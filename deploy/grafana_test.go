package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ferry-broker/ferry/internal/broker"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

const dashboardPath = "grafana/ferry.json"

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID    string                   `json:"uid"`
	Panels []dashPanel              `json:"panels"`
	Vars   struct{ List []dashVar } `json:"templating"`
}

type dashPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

type dashVar struct {
	Name  string `json:"name"`
	Query any    `json:"query"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// queries returns every PromQL expression of the dashboard, by where it is.
func (d dashboard) queries() map[string]string {
	out := map[string]string{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[p.Title+"/"+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Vars.List {
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				out["$"+v.Name] = varQuery(s)
			}
		}
	}
	return out
}

// labelValues is Grafana's label_values(SELECTOR, LABEL) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)

// varQuery is the PromQL of a variable's query: label_values' selector
// without the label it lists.
func varQuery(q string) string {
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	return q
}

func TestDashboardIsWellFormed(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" {
		t.Error("the dashboard has no uid: provisioning would make a new one on every load")
	}
	ids := map[int]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" {
				if len(p.Targets) == 0 {
					t.Errorf("panel %q queries nothing", p.Title)
				}
				if p.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q uses data source %q, not the dashboard's ${datasource} variable", p.Title, p.Datasource.UID)
				}
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has an empty query %s", p.Title, tg.RefID)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
}

// TestDashboardQueriesOnlyMetricsABrokerExports runs a broker, makes it
// allow, deny, replay, rate-limit and fail upstream once each, and checks
// that every metric a dashboard query names is in its /metrics, and that
// the dashboard charts what an operator of Ferry needs.
func TestDashboardQueriesOnlyMetricsABrokerExports(t *testing.T) {
	queried := map[string][]string{} // metric → where
	for where, expr := range readDashboard(t).queries() {
		names := promqlMetricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			queried[n] = append(queried[n], where)
		}
	}
	exported := scrapeBusyBroker(t)
	var missing []string
	for name, where := range queried {
		if !exported[name] {
			sort.Strings(where)
			missing = append(missing, name+" (in "+strings.Join(where, ", ")+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard queries %s, which /metrics does not have", m)
	}
	for _, need := range []string{
		"ferry_exchanges_total",                            // by policy and decision
		"ferry_exchange_duration_seconds_bucket",           // latency
		"ferry_exchange_stage_duration_seconds_bucket",     // latency by stage
		"ferry_upstream_errors_total",                      // upstream errors by provider
		"ferry_replay_hits_total",                          // replays
		"ferry_policy_reloads_total",                       // reload failures
		"ferry_rate_limited_total",                         // rate-limited requests
		"ferry_issuer_keys_last_success_timestamp_seconds", // key freshness
	} {
		if len(queried[need]) == 0 {
			t.Errorf("the dashboard does not chart %s", need)
		}
	}
}

// scrapeBusyBroker returns the metric names (histograms' _bucket, _sum
// and _count series included) of a broker that has done some work.
func scrapeBusyBroker(t *testing.T) map[string]bool {
	t.Helper()
	gh, gl := issuers.Start(t)
	dir := t.TempDir()
	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := tokensign.WriteKeyFile(filepath.Join(dir, "signing.pem"), key); err != nil {
		t.Fatal(err)
	}
	policies, err := filepath.Abs(filepath.Join("..", "trustpolicies"))
	if err != nil {
		t.Fatal(err)
	}
	raw := "policies: " + policies + "\n" +
		"issuers:\n" +
		"  - {name: github, issuer: " + gh.URL() + ", audiences: [ferry]}\n" +
		"  - {name: gitlab, issuer: " + gl.URL() + ", audiences: [ferry]}\n" +
		"audit: {path: audit.log}\n" +
		"token: {issuer: https://ferry.example.com, signing_key: signing.pem}\n" +
		"rate_limit: {per_second: 100, per_repository: {per_minute: 1, burst: 3}}\n"
	cfg, err := config.Parse([]byte(raw), dir, filepath.Join(dir, "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(context.Background(), cfg, broker.Options{Minters: map[string]grant.Minter{
		gcpiam.KindName: nil,
		awssts.KindName: awssts.GrantMinter{STS: throttledSTS{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)

	post := func(policy, token string) int {
		body, _ := json.Marshal(map[string]string{"policy": policy, "token": token})
		resp, err := http.Post(srv.URL+"/v1/exchange", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := issuers.Sign(t, gh, "github-push-main", nil)
	for _, step := range []struct {
		name   string
		status int
		got    int
	}{
		{"allowed", 200, post("ci-artifacts", tok)},
		{"replayed", 401, post("ci-artifacts", tok)},
		{"throttled by STS", 502, post("deploy-prod", issuers.Sign(t, gh, "github-environment-production", nil))},
		{"over the repository's limit", 429, post("ci-artifacts", issuers.Sign(t, gh, "github-push-main", nil))},
	} {
		if step.got != step.status {
			t.Fatalf("%s: %d, want %d", step.name, step.got, step.status)
		}
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for name, f := range fams {
		if len(f.GetMetric()) == 0 {
			continue
		}
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	return names
}

// throttledSTS throttles every AssumeRole, as STS does a matrix build's.
type throttledSTS struct{}

func (throttledSTS) AssumeRole(context.Context, awssts.Request) (*awssts.Credentials, error) {
	return nil, &awssts.UpstreamError{Op: "AssumeRole", Code: "Throttling", Message: "Rate exceeded", StatusCode: 400}
}

// promqlFunctions are PromQL's (and Grafana's label_values') words that
// are not metric names, where a query can hold them without parentheses
// right after (aggregations take "by (…)" first; binary operators stand
// alone).
var promqlKeywords = []string{
	"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
	"and", "or", "unless", "atan2",
	"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio",
}

// promqlMetricNames lists the metric names a PromQL expression selects, in
// order of first appearance. It reads PromQL's lexical structure: strings,
// label matchers ({…}), ranges and subqueries ([…]), the label lists after
// by, without, on, ignoring, group_left and group_right, numbers and
// durations, Grafana's $variables, function calls (a name followed by
// "(") and keywords are skipped; every other identifier is a metric.
func promqlMetricNames(expr string) []string {
	var out []string
	seen := map[string]bool{}
	skipLabelList := false
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
		case c == '{':
			i = skipTo(expr, i, '}')
		case c == '[':
			i = skipTo(expr, i, ']')
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				i = skipTo(expr, i, '}')
				continue
			}
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			next := i
			for next < len(expr) && (expr[next] == ' ' || expr[next] == '\t' || expr[next] == '\n') {
				next++
			}
			call := next < len(expr) && expr[next] == '('
			switch {
			case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, word):
				skipLabelList = call
			case slices.Contains(promqlKeywords, word), call:
			case !seen[word]:
				seen[word] = true
				out = append(out, word)
			}
		case c == '(' && skipLabelList:
			skipLabelList = false
			i = skipTo(expr, i, ')')
		default:
			i++
		}
	}
	return out
}

func isIdent(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

// skipString returns the index just past the string opening at i.
func skipString(s string, i int) int {
	q := s[i]
	for i++; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q != '`':
			i++
		case s[i] == q:
			return i + 1
		}
	}
	return i
}

// skipTo returns the index just past the close that ends the group opening
// at i, stepping over strings inside it.
func skipTo(s string, i int, close byte) int {
	for i++; i < len(s); {
		switch s[i] {
		case '"', '\'', '`':
			i = skipString(s, i)
		case close:
			return i + 1
		default:
			i++
		}
	}
	return i
}

func TestPromQLMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`ferry_replay_hits_total`, []string{"ferry_replay_hits_total"}},
		{`sum by (policy, decision) (rate(ferry_exchanges_total{instance=~"$instance"}[$__rate_interval]))`, []string{"ferry_exchanges_total"}},
		{`histogram_quantile(0.95, sum by (le, stage) (rate(ferry_exchange_stage_duration_seconds_bucket{stage!="a}b",x='q"'}[5m])))`,
			[]string{"ferry_exchange_stage_duration_seconds_bucket"}},
		{`sum(rate(a_sum[1m])) / sum without(job) (rate(a_count[1m])) > bool 0.5`, []string{"a_sum", "a_count"}},
		{`time() - min by (issuer) (ferry_issuer_keys_last_success_timestamp_seconds > 0)`, []string{"ferry_issuer_keys_last_success_timestamp_seconds"}},
		{`x and on (instance) group_left (policy) y offset 5m or z unless w`, []string{"x", "y", "z", "w"}},
		{varQuery(`label_values(ferry_exchanges_total{decision="allow"}, instance)`), []string{"ferry_exchanges_total"}},
		{`rate(ns:metric:rate5m{a="b"}[${interval}]) * 1e3`, []string{"ns:metric:rate5m"}},
		{`sum(count by (x) (m))`, []string{"m"}},
	}
	for _, tt := range tests {
		if got := promqlMetricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("promqlMetricNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}
