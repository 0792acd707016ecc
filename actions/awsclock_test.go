package actions_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
)

// stsClock sits between the broker and moto's STS and lets a test decide
// when the next credentials expire: the expiry a test controls, so a
// credential can run out in two seconds instead of fifteen minutes while
// the broker, the cache and the SDKs all read the real clock. Every other
// byte of every answer is moto's.
type stsClock struct {
	URL string

	mu        sync.Mutex
	lifetimes []time.Duration // for the next AssumeRole answers, in order
	rewritten int
}

var stsExpiration = regexp.MustCompile(`<Expiration>[^<]*</Expiration>`)

func startSTSClock(t *testing.T, motoURL string) *stsClock {
	t.Helper()
	target, err := url.Parse(motoURL)
	if err != nil {
		t.Fatal(err)
	}
	c := &stsClock{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = c.rewrite
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// expireNext makes the next AssumeRole answers expire after these
// lifetimes; later ones keep moto's expiry (the duration the broker asked).
func (c *stsClock) expireNext(d ...time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lifetimes = append(c.lifetimes, d...)
}

func (c *stsClock) rewrite(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	c.mu.Lock()
	if len(c.lifetimes) > 0 && stsExpiration.Match(body) {
		at := time.Now().Add(c.lifetimes[0]).UTC().Format(time.RFC3339)
		c.lifetimes = c.lifetimes[1:]
		c.rewritten++
		body = stsExpiration.ReplaceAll(body, []byte("<Expiration>"+at+"</Expiration>"))
	}
	c.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func (c *stsClock) rewrites() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rewritten
}

// auditedBroker is a broker whose audit log the test reads.
type auditedBroker struct {
	*ferryproc.Server
	audit string
}

// startBrokerVia runs the real binary against stsURL (moto, or an stsClock
// in front of it) and returns it with its audit log's path.
func (e *env) startBrokerVia(t *testing.T, stsURL string) auditedBroker {
	t.Helper()
	return e.startBrokerWith(t, stsURL, "")
}

// startBrokerWith is startBrokerVia with extra appended to the config.
func (e *env) startBrokerWith(t *testing.T, stsURL, extra string) auditedBroker {
	t.Helper()
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	writePolicies(t, policies)
	audit := filepath.Join(dir, "audit.log")
	cfg := ferryproc.Config(t, policies, e.gh.URL(), e.gl.URL(), audit) + extra
	return auditedBroker{ferryproc.Serve(t, e.ferry, cfg, append(e.sts.Env(), "AWS_ENDPOINT_URL="+stsURL)), audit}
}

// auditRecord is the part of an audit line these tests read.
type auditRecord struct {
	Decision   string `json:"decision"`
	Policy     string `json:"policy"`
	Error      string `json:"error"`
	Rule       string `json:"rule"`
	RequestID  string `json:"request_id"`
	Credential *struct {
		ID        string    `json:"id"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"credential"`
	// Released is set on a release record (decision "release").
	Released *struct {
		Revoked bool `json:"revoked"`
		Expired bool `json:"expired"`
		Repeat  bool `json:"repeat"`
	} `json:"released"`
}

// grants are the allow records of policy in the broker's audit log.
func (b auditedBroker) grants(t *testing.T, policy string) []auditRecord {
	t.Helper()
	var out []auditRecord
	for _, r := range b.records(t) {
		if r.Decision == "allow" && r.Policy == policy {
			out = append(out, r)
		}
	}
	return out
}

func (b auditedBroker) records(t *testing.T) []auditRecord {
	t.Helper()
	f, err := os.Open(b.audit)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// awsClientEnv is what a job's `run:` steps need to reach the local STS
// with the aws CLI or an SDK, and nothing that would give them keys: the
// credentials must come from what the action handed out.
func awsClientEnv(t *testing.T, stsURL string) []string {
	t.Helper()
	return []string{
		"AWS_ENDPOINT_URL=" + stsURL,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "no-credentials-file"),
	}
}

// waitUntil sleeps until at, which the test chose to lie a couple of
// seconds ahead (an expiry it set through stsClock).
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	d := time.Until(at)
	if d > 30*time.Second {
		t.Fatalf("asked to wait %s; the test meant a credential that expires in seconds", d)
	}
	time.Sleep(d)
}

// callerARNs runs `aws sts get-caller-identity` n times in the job and
// returns the ARN each one saw.
func callerARNs(t *testing.T, j *ghJob, n int, args ...string) []string {
	t.Helper()
	var arns []string
	for i := 0; i < n; i++ {
		r := j.run("aws", append([]string{"sts", "get-caller-identity", "--output", "json"}, args...)...)
		if r.code != 0 {
			t.Fatalf("aws sts get-caller-identity (command %d of %d) failed:\n%s", i+1, n, redact(r.stdout+r.stderr))
		}
		var id struct{ Arn string }
		if err := json.Unmarshal([]byte(r.stdout), &id); err != nil {
			t.Fatalf("aws output: %v\n%s", err, r.stdout)
		}
		arns = append(arns, id.Arn)
	}
	return arns
}

func allContain(list []string, sub string) bool {
	for _, s := range list {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return len(list) > 0
}
