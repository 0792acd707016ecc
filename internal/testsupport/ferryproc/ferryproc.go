// Package ferryproc builds the real ferry binary and runs `ferry serve` as a
// child process, for tests that meet the broker as its users do: through
// its command line, its config file and its HTTP port.
package ferryproc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

// BuildTags are the build tags every shipped binary is built with: `make
// build` and the Dockerfile spell them out, and deploy/image_test.go checks
// that both match this.
const BuildTags = "grpcnotrace"

// Build compiles cmd/ferry into dir as "ferry" (so dir can go on a PATH)
// and returns the binary's path. It uses the shipped build tags, so the
// tests run the code that ships.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "ferry")
	cmd := exec.Command("go", "build", "-tags", BuildTags, "-o", bin, "./cmd/ferry")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &BuildError{Err: err, Output: string(out)}
	}
	return bin, nil
}

// BuildError is a failed build, with the compiler's output.
type BuildError struct {
	Err    error
	Output string
}

func (e *BuildError) Error() string { return "build ferry: " + e.Err.Error() + "\n" + e.Output }

// BuildT is Build into a test's temporary directory.
func BuildT(t *testing.T) string {
	t.Helper()
	bin, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// repoRoot is the module root: this file is internal/testsupport/ferryproc.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Config is a ferry.yaml for a broker on a free loopback port that trusts a
// GitHub-style and a GitLab-style issuer (audience "ferry"), reads policies
// from dir, audits to auditPath and signs Ferry tokens with a fresh ES256 key
// written into the test's temporary directory.
func Config(t *testing.T, policies, githubIssuer, gitlabIssuer, auditPath string) string {
	t.Helper()
	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "signing.pem")
	if err := tokensign.WriteKeyFile(keyPath, key); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`listen: 127.0.0.1:0
policies: %s
issuers:
  - name: github
    issuer: %s
    audiences: [ferry]
  - name: gitlab
    issuer: %s
    audiences: [ferry]
audit:
  path: %s
token:
  issuer: https://ferry.example.com
  signing_key: %s
`, policies, githubIssuer, gitlabIssuer, auditPath, keyPath)
}

// Server is `ferry serve` running as a child process.
type Server struct {
	// URL is where it listens, as it logged.
	URL string

	cmd    *exec.Cmd
	stderr lockedBuffer
	done   chan struct{}
	err    error // the process's exit, once done is closed
}

// Serve writes cfgYAML to a file, runs `bin serve --config FILE` with env
// added to the test's environment, and waits for the broker to log where it
// listens. The process is killed when the test ends.
func Serve(t *testing.T, bin, cfgYAML string, env []string) *Server {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{done: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "--config", cfgPath)
	s.cmd.Env = append(os.Environ(), env...)
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start ferry serve: %v", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.stderr.WriteString(line + "\n")
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "ferry serving" {
				addr <- rec.Addr
			}
		}
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	select {
	case a := <-addr:
		s.URL = "http://" + a
	case <-s.done:
		t.Fatalf("ferry serve exited: %v\n%s", s.err, s.Stderr())
	case <-time.After(30 * time.Second):
		t.Fatalf("ferry serve did not start\n%s", s.Stderr())
	}
	return s
}

// Stderr is everything the broker has logged so far.
func (s *Server) Stderr() string { return s.stderr.String() }

// Stop sends SIGTERM and fails the test unless the broker exits cleanly.
func (s *Server) Stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("ferry serve exited with %v after SIGTERM\n%s", s.err, s.Stderr())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ferry serve did not stop on SIGTERM")
	}
}

// Kill ends the broker with SIGKILL, as a crash or the OOM killer would:
// no shutdown runs. It waits for the process to be gone.
func (s *Server) Kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("ferry serve did not die on SIGKILL")
	}
}

// lockedBuffer collects lines written by the reader goroutine while tests
// read them.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
