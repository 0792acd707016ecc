package broker

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"github.com/ferry-broker/ferry/internal/tlsreload"
)

// tlsConfig is the HTTPS config when ferry.yaml names a certificate and
// key, nil for plain HTTP. Plain HTTP that other hosts can reach is logged
// as a warning: exchanges carry CI tokens in and credentials out.
func (b *Broker) tlsConfig(ln net.Listener) (*tls.Config, error) {
	t := b.cfg.TLS
	if !t.Enabled() {
		if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			b.logger.Warn("serving plain HTTP on a non-loopback address: CI tokens and the credentials minted for them "+
				"cross the network in the clear unless TLS ends in front of Ferry (ingress, load balancer, mesh); "+
				"set tls.cert_file and tls.key_file to serve HTTPS", "addr", a.String())
		}
		return nil, nil
	}
	r, err := tlsreload.New(t.CertFile, t.KeyFile, tlsreload.Options{Logger: b.logger})
	if err != nil {
		return nil, fmt.Errorf("serve https: %w", err)
	}
	return r.TLSConfig(), nil
}

// serveHTTP serves plain HTTP, or HTTPS when srv has a TLS config.
func serveHTTP(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig.GetCertificate
	}
	return srv.Serve(ln)
}
