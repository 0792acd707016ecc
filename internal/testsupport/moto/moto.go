// Package moto runs a real local AWS (moto_server) for tests, so code that
// talks to STS is exercised against an actual HTTP server speaking the AWS
// query protocol rather than against a mock.
//
// Each Start launches its own moto_server on a free loopback port in its own
// process group and stops it when the test ends. moto keeps all state in
// memory, so servers never share state and tests may run in parallel.
//
// What moto's STS does and does not check (moto 5.x), so tests do not read
// more into a passing call than it proves:
//   - AssumeRole accepts any role ARN; no IAM role has to exist and no trust
//     policy is evaluated.
//   - Session tags, SourceIdentity and the inline session policy are accepted
//     and ignored (PackedPolicySize is always 6).
//   - The only AssumeRole input it refuses is a RoleSessionName longer than
//     64 characters (ValidationError); its characters and DurationSeconds are
//     not checked.
//   - Caller credentials are not checked unless the server is started with
//     WithIAMAuthentication, in which case unknown access keys are refused
//     with InvalidClientTokenId.
//   - GetCallerIdentity with credentials it minted answers with the
//     assumed-role ARN, which is how tests prove the minted keys work.
package moto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Fixed values of every moto server started here.
const (
	// Region is the region tests should configure; STS is global, moto
	// answers in any region.
	Region = "us-east-1"
	// AccountID is moto's default account: role ARNs in this account (or any
	// other) can be assumed.
	AccountID = "123456789012"
	// AccessKeyID and SecretAccessKey are dummy caller credentials; moto
	// accepts anything unless WithIAMAuthentication is used.
	AccessKeyID     = "testing"
	SecretAccessKey = "testing"
)

// How long a starting moto_server may take to answer before the test fails.
// Generous because a cold Python start on a loaded CI machine is slow; this
// is a failure bound, not an expectation.
const startTimeout = 60 * time.Second

// Server is one running moto_server.
type Server struct {
	// URL is the endpoint, e.g. http://127.0.0.1:50123, for BaseEndpoint,
	// AWS_ENDPOINT_URL or the aws CLI's --endpoint-url.
	URL string

	env     []string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	output  *syncBuffer
	closing sync.Once
}

// Option changes how a server is started.
type Option func(*options)

type options struct {
	env []string
}

// WithIAMAuthentication makes moto check request signatures and the caller's
// access key from the first request on, so calls signed with the dummy
// credentials fail with a real STS error (InvalidClientTokenId).
func WithIAMAuthentication() Option {
	return func(o *options) { o.env = append(o.env, "INITIAL_NO_AUTH_ACTION_COUNT=0") }
}

// Start launches moto_server on a free loopback port, waits until it answers
// and stops it when the test ends. When moto_server is not on PATH the test
// is skipped, or fails if the environment variable CI is "true": a CI run
// must not go green by skipping its real-component tests.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("moto_server is not on PATH (CI=true, so this is a failure): %v", err)
		}
		t.Skipf("moto_server is not on PATH: %v", err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}

	// Picking a free port and handing it to another process is racy: someone
	// may take it in between. moto then exits at once, so retry a few times.
	var lastErr error
	for range 3 {
		s, err := launch(t, bin, o)
		if err == nil {
			t.Cleanup(s.Close)
			s.env = clientEnv(t, s.URL)
			return s
		}
		lastErr = err
	}
	t.Fatalf("start moto_server: %v", lastErr)
	return nil
}

func launch(t testing.TB, bin string, o options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	out := &syncBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), o.env...)
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	s := &Server{
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		cmd:    cmd,
		exited: make(chan struct{}),
		output: out,
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w; moto_server output:\n%s", err, out.String())
	}
	t.Logf("moto_server listening on %s (pid %d)", s.URL, cmd.Process.Pid)
	return s, nil
}

func (s *Server) waitReady() error {
	client := &http.Client{Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/moto-api/", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return errors.New("moto_server exited before it answered")
		case <-ctx.Done():
			return fmt.Errorf("moto_server did not answer on %s within %s", s.URL, startTimeout)
		case <-tick.C:
		}
	}
}

// Close stops the server and every process it started. It is called by the
// test's cleanup; calling it earlier (to test an unreachable endpoint, say)
// is fine.
func (s *Server) Close() {
	s.closing.Do(func() {
		terminate(s.cmd, syscallTerm)
		select {
		case <-s.exited:
			return
		case <-time.After(5 * time.Second):
		}
		terminate(s.cmd, syscallKill)
		<-s.exited
	})
}

// AWSConfig is an SDK configuration that talks to this server with the dummy
// credentials.
func (s *Server) AWSConfig() aws.Config {
	return aws.Config{
		Region:           Region,
		Credentials:      aws.NewCredentialsCache(staticCredentials{}),
		BaseEndpoint:     aws.String(s.URL),
		RetryMaxAttempts: 1,
	}
}

// Env is the environment, as KEY=VALUE pairs, under which an AWS SDK or the
// aws CLI talks to this server with the dummy credentials and reads no
// config or credentials file of the machine. For a subprocess, append it to
// os.Environ() with the machine's AWS_ variables removed (an AWS_PROFILE left
// behind would name a profile the empty config file does not have); for code
// under test in this process, t.Setenv each pair.
func (s *Server) Env() []string { return append([]string(nil), s.env...) }

// clientEnv points config and credentials files at empty files so that a
// developer's ~/.aws cannot change what a test sees.
func clientEnv(t testing.TB, url string) []string {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	creds := filepath.Join(dir, "credentials")
	for _, p := range []string{cfg, creds} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatalf("write empty aws file: %v", err)
		}
	}
	return []string{
		"AWS_ENDPOINT_URL=" + url,
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_SESSION_TOKEN=",
		"AWS_CONFIG_FILE=" + cfg,
		"AWS_SHARED_CREDENTIALS_FILE=" + creds,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

type staticCredentials struct{}

func (staticCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "moto"}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer collects the server's output for failure messages; the process
// writes to it from another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
