package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/testca"
)

// TestServeHTTPSReloadsItsCertificate runs the real binary with tls in
// ferry.yaml: `ferry exchange` (trusting the test CA through SSL_CERT_FILE,
// as a pipeline with a private CA would) gets a token over HTTPS, a renewed
// certificate is presented without a restart, and a broken renewal leaves
// the good one in service.
func TestServeHTTPSReloadsItsCertificate(t *testing.T) {
	gh, gl := startIssuers(t)
	ca := testca.New(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.Issue(t, 1, time.Now().Add(time.Hour)).Write(t, certFile, keyFile)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := brokerConfig(t, gh, gl, filepath.Join(t.TempDir(), "audit.log")) +
		"tls:\n  cert_file: " + certFile + "\n  key_file: " + keyFile + "\n"
	srv := startServe(t, cfg, nil)
	base := strings.Replace(srv.URL, "http://", "https://", 1)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"},
	}}
	serial := func() int64 {
		t.Helper()
		res, err := client.Get(base + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz over https: %v", err)
		}
		res.Body.Close()
		client.CloseIdleConnections() // the next call handshakes again
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz = %d", res.StatusCode)
		}
		return res.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial = %d, want 1", got)
	}
	if strings.Contains(srv.Stderr(), "plain HTTP") {
		t.Errorf("warned about plain HTTP while serving HTTPS:\n%s", srv.Stderr())
	}

	// Plain HTTP on the HTTPS port gets nothing useful.
	if res, err := http.Get(srv.URL + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Error("plain HTTP was answered 200 on the HTTPS port")
		}
	}

	// The CLI, verifying the certificate against the CA it is told to trust.
	tok := writeToken(t, gh, "github-push-main", nil)
	env := []string{"SSL_CERT_FILE=" + caFile, "SSL_CERT_DIR=" + t.TempDir()}
	r := runBin(t, env, "exchange", "--url", "https://localhost:"+u.Port(), "--policy", "ci-artifacts", "--token-file", tok, "--format", "json")
	if r.code != 0 {
		t.Fatalf("ferry exchange over https: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		Token struct{ Token string } `json:"token"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Token.Token == "" {
		t.Errorf("ferry exchange printed %q (%v)", r.stdout, err)
	}
	// Without the CA it refuses the broker.
	r = runBin(t, []string{"SSL_CERT_FILE=" + filepath.Join(dir, "none.pem"), "SSL_CERT_DIR=" + t.TempDir()},
		"exchange", "--url", "https://localhost:"+u.Port(), "--policy", "ci-artifacts", "--token-file", writeToken(t, gh, "github-push-main", nil))
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("ferry exchange without the CA: exit %d\n%s", r.code, r.stderr)
	}

	// Renewal: the next handshake, once the broker has looked, presents it.
	ca.Issue(t, 2, time.Now().Add(time.Hour)).Write(t, certFile, keyFile)
	waitFor(t, srv, `"msg":"TLS certificate reloaded"`)
	if got := serial(); got != 2 {
		t.Errorf("serial = %d after the renewal, want 2", got)
	}

	// A broken renewal: refused, logged, and the good certificate stays.
	testca.WriteFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	waitFor(t, srv, "TLS certificate reload failed; keeping the last good certificate")
	if got := serial(); got != 2 {
		t.Errorf("serial = %d after a broken renewal, want the last good one (2)", got)
	}
	srv.Stop(t)
}

// waitFor waits until the broker has logged want. It bounds the wait only:
// the broker looks at its certificate files about once a second.
func waitFor(t *testing.T, srv *ferryproc.Server, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(srv.Stderr(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the broker never logged %q:\n%s", want, srv.Stderr())
		}
		// Handshakes are what make the broker look at the files.
		if res, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // only to trigger a look; verified calls follow
		}}).Get(strings.Replace(srv.URL, "http://", "https://", 1) + "/healthz"); err == nil {
			res.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServeWarnsAboutPlainHTTPBeyondLoopback(t *testing.T) {
	gh, gl := startIssuers(t)
	cfg := brokerConfig(t, gh, gl, filepath.Join(t.TempDir(), "audit.log"))
	const warning = "serving plain HTTP on a non-loopback address"

	loopback := startServe(t, cfg, nil)
	if strings.Contains(loopback.Stderr(), warning) {
		t.Errorf("warned on loopback:\n%s", loopback.Stderr())
	}
	loopback.Stop(t)

	if !strings.Contains(cfg, "listen: 127.0.0.1:0\n") {
		t.Fatalf("the test config does not listen where this test expects:\n%s", cfg)
	}
	open := startServe(t, strings.Replace(cfg, "listen: 127.0.0.1:0\n", "listen: 0.0.0.0:0\n", 1), nil)
	if !strings.Contains(open.Stderr(), warning) || !strings.Contains(open.Stderr(), "tls.cert_file") {
		t.Errorf("no warning about plain HTTP on 0.0.0.0:\n%s", open.Stderr())
	}
	open.Stop(t)
}

func TestServeRefusesToStartWithABrokenCertificate(t *testing.T) {
	gh, gl := startIssuers(t)
	dir := t.TempDir()
	ca := testca.New(t)
	good, other := ca.Issue(t, 1, time.Now().Add(time.Hour)), ca.Issue(t, 2, time.Now().Add(time.Hour))
	testca.WriteFile(t, filepath.Join(dir, "good.crt"), good.CertPEM)
	testca.WriteFile(t, filepath.Join(dir, "other.key"), other.KeyPEM)
	tests := []struct{ name, tls, want string }{
		{"a missing certificate", "{cert_file: missing.crt, key_file: other.key}", "tls.cert_file: open " + filepath.Join(dir, "missing.crt")},
		{"a key that does not match", "{cert_file: good.crt, key_file: other.key}", "private key does not match public key"},
		{"a certificate without a key", "{cert_file: good.crt}", "tls.key_file: required when tls.cert_file is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "ferry.yaml")
			if err := os.WriteFile(cfg, []byte(brokerConfig(t, gh, gl, filepath.Join(t.TempDir(), "audit.log"))+"tls: "+tt.tls+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runBin(t, nil, "serve", "--config", cfg)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "BEGIN") {
				t.Errorf("exit %d, want 1 with %q:\n%s", r.code, tt.want, r.stderr)
			}
		})
	}
}
