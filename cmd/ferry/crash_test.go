package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/devissuer"
)

// exchangeLoad posts exchanges to a broker from several goroutines until
// stop is closed or the broker stops answering, and returns the request id
// of every answer (any status but 429, which is refused before auditing).
type exchangeLoad struct {
	url      string
	allow    chan string // fresh tokens for ci-artifacts (token grant): one use each
	denyTok  string      // a token deploy-prod refuses (ref): reusable, refusals spend nothing
	answered sync.Map    // request_id → status
	answers  atomic.Int64
}

func (l *exchangeLoad) run(t *testing.T, workers int, stop <-chan struct{}) {
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				policy, tok := "deploy-prod", l.denyTok
				if (w+i)%2 == 0 {
					select {
					case tok = <-l.allow:
						policy = "ci-artifacts"
					default:
					}
				}
				body, _ := json.Marshal(map[string]string{"policy": policy, "token": tok})
				resp, err := client.Post(l.url+"/v1/exchange", "application/json", bytes.NewReader(body))
				if err != nil {
					return // the broker is gone
				}
				data, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					return // cut off mid-answer: not an answer
				}
				var ans struct {
					RequestID string `json:"request_id"`
				}
				if json.Unmarshal(data, &ans) != nil || ans.RequestID == "" {
					t.Errorf("an answer without a request id: %d %s", resp.StatusCode, data)
					return
				}
				if resp.StatusCode != http.StatusTooManyRequests {
					l.answered.Store(ans.RequestID, resp.StatusCode)
					l.answers.Add(1)
				}
			}
		})
	}
	wg.Wait()
}

func signTokens(t *testing.T, is *devissuer.Issuer, n int) chan string {
	t.Helper()
	ch := make(chan string, n)
	for range n {
		claims := mustSample(t, "github-push-main")
		tok, err := is.Sign(claims)
		if err != nil {
			t.Fatal(err)
		}
		ch <- tok
	}
	return ch
}

// auditRequestIDs returns the request ids of the file's complete lines.
func auditRequestIDs(t *testing.T, path string) (ids map[string]string, lines int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids = map[string]string{}
	for line := range strings.Lines(string(data)) {
		if !strings.HasSuffix(line, "\n") {
			break // a torn final line: not a record
		}
		var r struct {
			RequestID string `json:"request_id"`
			Decision  string `json:"decision"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %d: %v", lines+1, err)
		}
		ids[r.RequestID] = r.Decision
		lines++
	}
	return ids, lines
}

// TestKilledBrokerLosesNoAnsweredDecisionAndResumesTheChain is the
// durability contract end to end: kill -9 a real `ferry serve` under
// concurrent load, then check that every request that got an answer has
// its record, that the file verifies (at worst with an incomplete final
// record, reported as such), and that a restarted broker repairs a torn
// tail, continues the chain, and logs a checkpoint that verifies.
func TestKilledBrokerLosesNoAnsweredDecisionAndResumesTheChain(t *testing.T) {
	gh, gl := startIssuers(t)
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.log")
	cfg := brokerConfig(t, gh, gl, auditPath)

	denied := writeToken(t, gh, "github-environment-production", func(c map[string]any) { c["ref"] = "refs/heads/dev" })
	denyTok, _ := os.ReadFile(denied)
	load := &exchangeLoad{allow: signTokens(t, gh, 300), denyTok: string(denyTok)}

	srv := startServe(t, cfg, nil)
	load.url = srv.URL
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { load.run(t, 8, stop); close(done) }()
	// Kill once the load is well under way, while requests are in flight.
	deadline := time.Now().Add(10 * time.Second)
	for load.answers.Load() < 150 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	srv.Kill(t)
	close(stop)
	<-done
	if load.answers.Load() < 50 {
		t.Fatalf("only %d answers before the kill: the load did not run", load.answers.Load())
	}

	// 1. Every answered request has its record; the file verifies, or ends
	// in an incomplete final record reported as such.
	ids, records := auditRequestIDs(t, auditPath)
	load.answered.Range(func(k, v any) bool {
		if _, ok := ids[k.(string)]; !ok {
			t.Errorf("request %s was answered %d but has no audit record", k, v)
		}
		return true
	})
	v := runBin(t, nil, "audit", "verify", auditPath)
	switch {
	case v.code == 0 && strings.Contains(v.stdout, "chain intact"):
	case v.code == 1 && strings.Contains(v.stderr, "incomplete final record") && strings.Count(v.stderr, "\n") == 2:
		t.Logf("the kill tore the final record: %s", v.stderr)
	default:
		t.Fatalf("ferry audit verify after the kill: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	t.Logf("%d answers, %d records when killed", load.answers.Load(), records)

	// 2. A crash mid-write, made certain: part of a record after the last.
	data, _ := os.ReadFile(auditPath)
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	lastLine := complete[bytes.LastIndexByte(complete[:len(complete)-1], '\n')+1:]
	torn := append(bytes.Clone(complete), lastLine[:len(lastLine)/2]...)
	if err := os.WriteFile(auditPath, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	v = runBin(t, nil, "audit", "verify", auditPath)
	if v.code != 1 || !strings.Contains(v.stderr, "incomplete final record") || !strings.Contains(v.stderr, "complete records before it chain intact") {
		t.Fatalf("verify of a torn file: exit %d, stderr %q; want 1 and the incomplete final record", v.code, v.stderr)
	}

	// 3. A restarted broker repairs the end and continues the chain.
	srv2 := startServe(t, cfg, nil)
	if !strings.Contains(srv2.Stderr(), "set it aside and continuing the chain") {
		t.Errorf("the restarted broker did not log the repair:\n%s", srv2.Stderr())
	}
	jwks := filepath.Join(dir, "jwks.json")
	resp, err := http.Get(srv2.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwksData, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	os.WriteFile(jwks, jwksData, 0o600)
	after := &exchangeLoad{url: srv2.URL, allow: signTokens(t, gh, 5), denyTok: string(denyTok)}
	stop2 := make(chan struct{})
	go func() {
		for after.answers.Load() < 10 {
			time.Sleep(time.Millisecond)
		}
		close(stop2)
	}()
	after.run(t, 2, stop2)
	srv2.Stop(t) // SIGTERM: a clean shutdown logs the final checkpoint

	ids2, records2 := auditRequestIDs(t, auditPath)
	if want := strings.Count(string(complete), "\n") + int(after.answers.Load()); records2 != want {
		t.Errorf("%d records after the restart, want %d (the complete ones before it and one per answer since)", records2, want)
	}
	after.answered.Range(func(k, _ any) bool {
		if _, ok := ids2[k.(string)]; !ok {
			t.Errorf("request %s after the restart has no record", k)
		}
		return true
	})
	saved, _ := filepath.Glob(auditPath + ".torn-*")
	if len(saved) != 1 {
		t.Errorf("torn bytes saved to %v, want one audit.log.torn-… file", saved)
	} else if b, _ := os.ReadFile(saved[0]); !bytes.Equal(b, lastLine[:len(lastLine)/2]) {
		t.Errorf("saved torn bytes %q, want %q", b, lastLine[:len(lastLine)/2])
	}

	// 4. The whole chain verifies, and against the broker's checkpoints
	// with the keys it publishes; cutting a record off the end is caught.
	logPath := filepath.Join(dir, "ferry.log")
	os.WriteFile(logPath, []byte(srv.Stderr()+srv2.Stderr()), 0o600)
	v = runBin(t, nil, "audit", "verify", auditPath, "--checkpoints", logPath, "--jwks", jwks)
	if v.code != 0 || !strings.Contains(v.stdout, "chain intact") || !strings.Contains(v.stdout, "signature verified") {
		t.Fatalf("verify after the restart: exit %d\n%s%s\nbroker log:\n%s", v.code, v.stdout, v.stderr, srv2.Stderr())
	}
	final, _ := os.ReadFile(auditPath)
	cut := filepath.Join(dir, "cut.log")
	os.WriteFile(cut, final[:bytes.LastIndexByte(final[:len(final)-1], '\n')+1], 0o600)
	v = runBin(t, nil, "audit", "verify", cut, "--checkpoints", logPath, "--jwks", jwks)
	if v.code != 1 || !strings.Contains(v.stderr, "records were cut off the end") || !strings.Contains(v.stderr, logPath+":") {
		t.Errorf("verify of a file cut after the last checkpoint: exit %d, stderr %q", v.code, v.stderr)
	}
}
