// Package tlsreload serves a TLS certificate and key from files and picks
// up a renewed pair without a restart: cert-manager, a Kubernetes Secret
// update or certbot replace the files, and the next handshake presents the
// new certificate. A replacement that does not load (half written, key and
// certificate that do not match, already expired) is refused with a log
// line saying why, and the last good pair stays in service.
package tlsreload

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often, at most, a handshake looks at the files.
// Reading two small files once a second costs nothing next to the
// handshakes it serves, and no renewal is in a hurry.
const DefaultInterval = time.Second

// Options tune a Reloader; the zero value is ready to use.
type Options struct {
	Logger *slog.Logger
	// Interval between looks at the files; DefaultInterval when zero.
	Interval time.Duration
	// Now is the clock, for tests; time.Now when nil.
	Now func() time.Time
}

// Reloader holds the pair in service. Its GetCertificate goes in a
// tls.Config; TLSConfig builds one.
type Reloader struct {
	certFile, keyFile string
	logger            *slog.Logger
	interval          time.Duration
	now               func() time.Time

	current atomic.Pointer[tls.Certificate]

	mu       sync.Mutex // one look at the files at a time
	checked  time.Time  // when the files were last looked at
	seen     [sha256.Size]byte
	lastFail string // the last problem logged, so a file that stays broken is logged once
}

// New loads the pair once. A pair that does not load is an error: there is
// no last good certificate to fall back on yet.
func New(certFile, keyFile string, o Options) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, logger: o.Logger, interval: o.Interval, now: o.Now}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.interval <= 0 {
		r.interval = DefaultInterval
	}
	if r.now == nil {
		r.now = time.Now
	}
	certPEM, keyPEM, err := r.read()
	if err != nil {
		return nil, err
	}
	pair, err := parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: %s and %s: %w", certFile, keyFile, err)
	}
	now := r.now()
	if now.After(pair.Leaf.NotAfter) {
		// Serve it anyway, since a renewal may be on its way, but say so:
		// every client will refuse it until then.
		r.logger.Warn("TLS certificate has expired", certAttrs(pair.Leaf)...)
	}
	r.current.Store(pair)
	r.checked, r.seen = now, digest(certPEM, keyPEM)
	return r, nil
}

// TLSConfig is a server config presenting the current pair, TLS 1.2 at
// least.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// GetCertificate is tls.Config.GetCertificate: the current pair, after a
// look at the files when the interval has passed.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeReload()
	return r.current.Load(), nil
}

// Current is the pair in service.
func (r *Reloader) Current() *tls.Certificate { return r.current.Load() }

// maybeReload looks at the files when the interval has passed. A handshake
// that finds another one looking does not wait for it.
func (r *Reloader) maybeReload() {
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < r.interval {
		return
	}
	r.checked = now
	certPEM, keyPEM, err := r.read()
	if err != nil {
		// Forget what was seen, so the files are loaded (and the fix
		// logged) when they come back, even unchanged.
		r.seen = [sha256.Size]byte{}
		r.refuse(err)
		return
	}
	d := digest(certPEM, keyPEM)
	if d == r.seen {
		return // unchanged, or the same broken files already refused
	}
	r.seen = d
	pair, err := parse(certPEM, keyPEM)
	if err == nil && now.After(pair.Leaf.NotAfter) {
		err = fmt.Errorf("the new certificate expired at %s", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err != nil {
		r.refuse(fmt.Errorf("%s and %s: %w", r.certFile, r.keyFile, err))
		return
	}
	r.current.Store(pair)
	r.lastFail = ""
	r.logger.Info("TLS certificate reloaded", certAttrs(pair.Leaf)...)
}

// refuse logs why the files on disk are not in service, once per problem.
func (r *Reloader) refuse(err error) {
	if msg := err.Error(); msg != r.lastFail {
		r.lastFail = msg
		r.logger.Error("TLS certificate reload failed; keeping the last good certificate", "err", err)
	}
}

// read reads both files. Errors name the file, never its contents.
func (r *Reloader) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		return nil, nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		return nil, nil, fmt.Errorf("tls.key_file: %w", err)
	}
	return certPEM, keyPEM, nil
}

// parse loads a pair. crypto/tls's errors describe the problem without
// quoting key material.
func parse(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	if len(bytes.TrimSpace(certPEM)) == 0 {
		return nil, errors.New("the certificate file is empty")
	}
	if len(bytes.TrimSpace(keyPEM)) == 0 {
		return nil, errors.New("the key file is empty")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
	}
	return &pair, nil
}

// digest identifies the files' contents: comparing contents rather than
// modification times catches a rewrite within one timestamp tick.
func digest(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00", len(certPEM))
	h.Write(certPEM)
	h.Write(keyPEM)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// certAttrs describe a certificate for the log: public facts only.
func certAttrs(c *x509.Certificate) []any {
	return []any{
		"subject", c.Subject.String(), "dns_names", c.DNSNames, "serial", c.SerialNumber.String(),
		"not_after", c.NotAfter.UTC().Format(time.RFC3339),
	}
}
