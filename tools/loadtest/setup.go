package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/testsupport/deploypolicy"
)

// The policies every broker serves: one a deny path refuses on its ref,
// one granting a Ferry-signed token (ES256), one granting AWS credentials.
var policies = map[string]string{
	"deploy.yaml": `issuer: github
match: {repository: acme/app, repository_id: "892345671", ref: refs/heads/main}
deny: [{event_name: pull_request_target}]
grant: {token: {audience: https://deploy.internal.example}}
`,
	"artifacts.yaml": `issuer: github
match: {repository: acme/app, repository_id: "892345671"}
grant: {token: {audience: https://artifacts.internal.example, claims: [repository, ref, sha]}}
`,
	"cloud.yaml": `issuer: github
match: {repository: acme/app, repository_id: "892345671"}
grant: {aws: {role_arn: "arn:aws:iam::123456789012:role/deploy", session_tags: [repository, ref]}}
`,
}

// writeConfig writes the policies (and extra policies shaped like a
// production deploy policy, one per repository), a signing key and a
// ferry.yaml into dir and returns the config's path. The audit log is a
// file, fsynced as in production; the per-address rate limit is off, since
// every request comes from one address here.
func writeConfig(dir, issuer, replay, auditPath string, extra int) (string, error) {
	pdir := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return "", err
	}
	for name, body := range policies {
		if err := os.WriteFile(filepath.Join(pdir, name), []byte(body), 0o600); err != nil {
			return "", err
		}
	}
	for i := range extra {
		if err := os.WriteFile(filepath.Join(pdir, deploypolicy.Name(i)+".yaml"), deploypolicy.YAML(i), 0o600); err != nil {
			return "", err
		}
	}
	key, err := tokensign.GenerateKey()
	if err != nil {
		return "", err
	}
	if err := tokensign.WriteKeyFile(filepath.Join(dir, "signing.pem"), key); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
policies: ./policies
issuers:
  - {name: github, issuer: %q, audiences: [ferry]}
audit: {path: %q}
replay: %s
token: {issuer: https://ferry.loadtest.example, signing_key: ./signing.pem}
policy_reload: 0s
rate_limit: {per_second: 0}
`, issuer, auditPath, replay)
	path := filepath.Join(dir, "ferry.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// broker is a running `ferry serve`.
type broker struct {
	url string
	cmd *exec.Cmd
	// helperCPU, when set, is the CPU time so far of a process the broker
	// needs on this machine (its redis-server), whose CPU the broker's
	// own counter does not include.
	helperCPU func() time.Duration
}

// startBroker runs `ferry serve --config cfg` and waits for the line that
// says where it listens; the rest of its log is drained and dropped.
func startBroker(ctx context.Context, bin, cfg string, env []string) (*broker, error) {
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard // the audit log, when it goes to stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	addr := make(chan string, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "ferry serving" {
				addr <- rec.Addr
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return &broker{url: "http://" + a, cmd: cmd}, nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	var log []string
	for len(lines) > 0 {
		log = append(log, <-lines)
	}
	return nil, fmt.Errorf("ferry serve did not start:\n%s", strings.Join(log, "\n"))
}

// rss is the broker's resident set, from /proc, and the anonymous part
// of it: the heap, stacks and data, as against the executable's pages,
// which are the file's and which the kernel can drop and read again.
func (b *broker) rss() string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		return "unknown"
	}
	return residentSet(string(data))
}

func residentSet(status string) string {
	field := func(name string) string {
		for _, line := range strings.Split(status, "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return "unknown"
	}
	return fmt.Sprintf("%s (anonymous %s)", field("VmRSS"), field("RssAnon"))
}

func (b *broker) stop() {
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}

// startRedis runs a redis-server on a free loopback port, without
// persistence, and returns its address and a reading of its CPU time.
func startRedis(ctx context.Context) (string, func(), func() time.Duration, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, nil, errors.New("redis-server is not installed (apt-get install redis-server), or leave out the token-redis scenario")
	}
	port, err := freePort()
	if err != nil {
		return "", nil, nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return "", nil, nil, fmt.Errorf("start redis-server: %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return addr, stop, func() time.Duration { return processCPU(cmd.Process.Pid) }, nil
		}
	}
	stop()
	return "", nil, nil, fmt.Errorf("redis-server did not listen on %s", addr)
}

// processCPU is the CPU time every thread of process pid has run so far,
// to the nanosecond (/proc/PID/task/*/schedstat), or -1 when it cannot be
// read.
func processCPU(pid int) time.Duration {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return -1
	}
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended since the glob
		}
		d, err := parseSchedstat(string(data))
		if err != nil {
			return -1
		}
		total += d
	}
	return total
}

// parseSchedstat reads the time on CPU, the first of schedstat's three
// fields, in nanoseconds.
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, fmt.Errorf("schedstat %q: want three fields", s)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || ns < 0 {
		return 0, fmt.Errorf("schedstat %q: bad time on CPU", s)
	}
	return time.Duration(ns), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serve runs h on a fresh loopback port until ctx ends.
func serve(ctx context.Context, h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return "http://" + l.Addr().String(), nil
}

// fakeSTS answers every AssumeRole at once, as STS would, so the AWS
// scenario measures Ferry and not the network to AWS.
func fakeSTS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>ASIALOADTEST</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>
<SessionToken>session</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/deploy/loadtest</Arn><AssumedRoleId>AROALOADTEST:loadtest</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>loadtest</RequestId></ResponseMetadata></AssumeRoleResponse>`,
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	})
}

// helperTime is the CPU time so far of the broker's helper process, or -1
// when it has none or it cannot be read.
func (b *broker) helperTime() time.Duration {
	if b == nil || b.helperCPU == nil {
		return -1
	}
	return b.helperCPU()
}
