package tlsreload_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/fakeclock"
	"github.com/ferry-broker/ferry/internal/testsupport/testca"
	"github.com/ferry-broker/ferry/internal/tlsreload"
)

// logs collects what the reloader logs from the server's goroutines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type fixture struct {
	ca                *testca.CA
	certFile, keyFile string
	clock             *fakeclock.Clock
	logs              *logs
	reloader          *tlsreload.Reloader
	addr              string
}

// start writes a first pair (serial 1), builds a Reloader on it and serves
// HTTPS with it on a loopback port.
func start(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		ca:       testca.New(t),
		certFile: filepath.Join(dir, "tls.crt"),
		keyFile:  filepath.Join(dir, "tls.key"),
		clock:    fakeclock.At(time.Now()),
		logs:     &logs{},
	}
	f.ca.Issue(t, 1, time.Now().Add(time.Hour)).Write(t, f.certFile, f.keyFile)
	f.serve(t)
	return f
}

func (f *fixture) serve(t *testing.T) {
	t.Helper()
	r, err := tlsreload.New(f.certFile, f.keyFile, tlsreload.Options{
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil)),
		Now:    f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.reloader = r
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig:         r.TLSConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	f.addr = ln.Addr().String()
}

// serial does one verified handshake and returns the serial number of the
// certificate the server presented.
func (f *fixture) serial(t *testing.T) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestServesHTTPSThatAVerifyingClientAccepts(t *testing.T) {
	f := start(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.Pool()}}}
	res, err := client.Get("https://" + f.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("GET = %d %q", res.StatusCode, body)
	}
	if res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
		t.Errorf("connection state %+v", res.TLS)
	}

	// A client that trusts another CA refuses the certificate: the test
	// above verifies for real.
	other := testca.New(t)
	_, err = tls.Dial("tcp", f.addr, &tls.Config{RootCAs: other.Pool(), ServerName: "localhost"})
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Errorf("a client trusting another CA: err = %v, want an unknown-authority error", err)
	}
}

func TestRefusesTLSBelow12(t *testing.T) {
	f := start(t)
	_, err := tls.Dial("tcp", f.addr, &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}) //nolint:gosec // the point of the test
	if err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	if got := f.serial(t); got != 1 {
		t.Errorf("serial = %d after a refused handshake", got)
	}
}

func TestTheNextHandshakeAfterARenewalPresentsTheNewCertificate(t *testing.T) {
	f := start(t)
	if got := f.serial(t); got != 1 {
		t.Fatalf("serial = %d, want 1", got)
	}
	f.ca.Issue(t, 2, time.Now().Add(time.Hour)).Write(t, f.certFile, f.keyFile)

	// Within the interval the files are not looked at again.
	f.clock.Advance(tlsreload.DefaultInterval / 2)
	if got := f.serial(t); got != 1 {
		t.Errorf("serial = %d within the interval, want the pair in service (1)", got)
	}
	f.clock.Advance(tlsreload.DefaultInterval)
	if got := f.serial(t); got != 2 {
		t.Errorf("serial = %d after the renewal, want 2", got)
	}
	if !strings.Contains(f.logs.String(), `"msg":"TLS certificate reloaded"`) || !strings.Contains(f.logs.String(), `"serial":"2"`) {
		t.Errorf("the reload is not logged:\n%s", f.logs)
	}

	// Rewritten in place, same size and a second later: still noticed.
	f.ca.Issue(t, 3, time.Now().Add(time.Hour)).Write(t, f.certFile, f.keyFile)
	f.clock.Advance(tlsreload.DefaultInterval)
	if got := f.serial(t); got != 3 {
		t.Errorf("serial = %d after a second renewal, want 3", got)
	}
}

func TestABrokenReplacementKeepsTheLastGoodPair(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, f *fixture)
		want  string // in the logged reason
	}{
		{"a certificate file that is not PEM", func(t *testing.T, f *fixture) {
			testca.WriteFile(t, f.certFile, []byte("not a certificate\n"))
		}, "failed to find any PEM data in certificate input"},
		{"a certificate cut short", func(t *testing.T, f *fixture) {
			p := f.ca.Issue(t, 9, time.Now().Add(time.Hour))
			testca.WriteFile(t, f.certFile, p.CertPEM[:len(p.CertPEM)/2])
			testca.WriteFile(t, f.keyFile, p.KeyPEM)
		}, "certificate"},
		{"a new certificate with the old key", func(t *testing.T, f *fixture) {
			testca.WriteFile(t, f.certFile, f.ca.Issue(t, 9, time.Now().Add(time.Hour)).CertPEM)
		}, "private key does not match public key"},
		{"an empty key file", func(t *testing.T, f *fixture) {
			p := f.ca.Issue(t, 9, time.Now().Add(time.Hour))
			testca.WriteFile(t, f.certFile, p.CertPEM)
			testca.WriteFile(t, f.keyFile, nil)
		}, "the key file is empty"},
		{"an expired certificate", func(t *testing.T, f *fixture) {
			f.ca.Issue(t, 9, time.Now().Add(-time.Minute)).Write(t, f.certFile, f.keyFile)
		}, "the new certificate expired at"},
		{"a key file removed", func(t *testing.T, f *fixture) {
			if err := os.Remove(f.keyFile); err != nil {
				t.Fatal(err)
			}
		}, "tls.key_file: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t)
			tt.write(t, f)
			f.clock.Advance(tlsreload.DefaultInterval)
			if got := f.serial(t); got != 1 {
				t.Fatalf("serial = %d after a broken replacement, want the last good pair (1)", got)
			}
			logged := f.logs.String()
			if !strings.Contains(logged, "keeping the last good certificate") || !strings.Contains(logged, tt.want) {
				t.Errorf("log does not say why (%q):\n%s", tt.want, logged)
			}
			if strings.Contains(logged, "PRIVATE KEY") || strings.Contains(logged, "BEGIN") {
				t.Errorf("log shows file contents:\n%s", logged)
			}

			// Still broken a second later: not logged again.
			f.clock.Advance(tlsreload.DefaultInterval)
			f.serial(t)
			if n := strings.Count(f.logs.String(), "reload failed"); n != 1 {
				t.Errorf("the same problem was logged %d times", n)
			}

			// Fixed: the fix is served.
			f.ca.Issue(t, 4, time.Now().Add(time.Hour)).Write(t, f.certFile, f.keyFile)
			f.clock.Advance(tlsreload.DefaultInterval)
			if got := f.serial(t); got != 4 {
				t.Errorf("serial = %d after the fix, want 4", got)
			}
		})
	}
}

// A Kubernetes Secret volume: tls.crt and tls.key are symlinks into
// ..data, itself a symlink that the kubelet swaps to a new directory in
// one rename when the Secret changes.
func TestAKubernetesSecretVolumeUpdateIsPickedUp(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t)
	version := func(name string, serial int64) {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		ca.Issue(t, serial, time.Now().Add(time.Hour)).Write(t, filepath.Join(d, "tls.crt"), filepath.Join(d, "tls.key"))
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_23_10_00_00.1", 1)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{ca: ca, certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), clock: fakeclock.At(time.Now()), logs: &logs{}}
	f.serve(t)
	if got := f.serial(t); got != 1 {
		t.Fatalf("serial = %d, want 1", got)
	}
	version("..2026_11_23_11_00_00.2", 2)
	f.clock.Advance(tlsreload.DefaultInterval)
	if got := f.serial(t); got != 2 {
		t.Errorf("serial = %d after the Secret update, want 2", got)
	}
}

func TestNewRefusesAPairThatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t)
	good := ca.Issue(t, 1, time.Now().Add(time.Hour))
	other := ca.Issue(t, 2, time.Now().Add(time.Hour))
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		testca.WriteFile(t, p, data)
		return p
	}
	cert, key := write("good.crt", good.CertPEM), write("good.key", good.KeyPEM)
	tests := []struct {
		name, cert, key, want string
	}{
		{"a missing certificate", filepath.Join(dir, "none.crt"), key, "tls.cert_file: open "},
		{"a missing key", cert, filepath.Join(dir, "none.key"), "tls.key_file: open "},
		{"a key that does not match", cert, write("other.key", other.KeyPEM), "private key does not match public key"},
		{"a key where the certificate goes", key, key, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tlsreload.New(tt.cert, tt.key, tlsreload.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("err shows file contents: %v", err)
			}
		})
	}
	r, err := tlsreload.New(cert, key, tlsreload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Current(); c == nil || c.Leaf.SerialNumber.Int64() != 1 {
		t.Errorf("Current = %+v", c)
	}
	if cfg := r.TLSConfig(); cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
}
