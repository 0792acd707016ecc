package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/broker"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

// writeSigningKey writes a fresh ES256 key to path and returns it.
func writeSigningKey(t *testing.T, path string) *tokensign.Key {
	t.Helper()
	key, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := tokensign.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	return key
}

// running is a broker served by Serve on a loopback port, as `ferry serve`
// runs it, over the example policies and with a token signing key, so the
// ci-artifacts policy mints.
type running struct {
	base string
	gh   *devissuer.Issuer
	b    *broker.Broker
}

// serveBroker starts a broker whose ferry.yaml is the common part plus
// extra (top-level keys; audit.log in a temporary directory and a fresh
// token signing key unless extra has audit: or token:), with minters given
// by kind replacing the config's (gcp has none unless given).
func serveBroker(t *testing.T, gh, gl *devissuer.Issuer, extra string, minters map[string]grant.Minter) *running {
	t.Helper()
	dir := t.TempDir()
	policies, err := filepath.Abs(filepath.Join("..", "..", "trustpolicies"))
	if err != nil {
		t.Fatal(err)
	}
	raw := "listen: 127.0.0.1:0\npolicies: " + policies + "\n" +
		"issuers:\n" +
		"  - {name: github, issuer: " + gh.URL() + ", audiences: [ferry]}\n" +
		"  - {name: gitlab, issuer: " + gl.URL() + ", audiences: [ferry]}\n" + extra
	if !strings.Contains(extra, "token:") {
		writeSigningKey(t, filepath.Join(dir, "signing.pem"))
		raw += "token: {issuer: https://ferry.example.com, signing_key: signing.pem}\n"
	}
	if !strings.Contains(extra, "audit:") {
		raw += "audit: {path: audit.log}\n"
	}
	cfg, err := config.Parse([]byte(raw), dir, filepath.Join(dir, "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	given := map[string]grant.Minter{gcpiam.KindName: nil}
	for k, m := range minters {
		given[k] = m
	}
	b, err := broker.New(context.Background(), cfg, broker.Options{Minters: given})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &running{base: "http://" + ln.Addr().String(), gh: gh, b: b}
}

// answer is one HTTP answer of the broker.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) str(key string) string {
	s, _ := a.body[key].(string)
	return s
}

func (r *running) do(t *testing.T, method, path string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// exchange asks for policy with a fresh token of the sample payload,
// edited by edit.
func (r *running) exchange(t *testing.T, policy, sample string, edit func(map[string]any)) answer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"policy": policy, "token": issuers.Sign(t, r.gh, sample, edit)})
	return r.do(t, http.MethodPost, "/v1/exchange", body)
}

func (r *running) ready(t *testing.T) answer {
	t.Helper()
	return r.do(t, http.MethodGet, "/readyz", nil)
}
