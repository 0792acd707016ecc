// Package urlcheck holds the one rule for where Ferry sends or accepts
// things over HTTP: TLS, or plain HTTP to this machine only.
package urlcheck

import (
	"net"
	"net/url"
)

// Loopback reports whether host (a URL's Hostname, without port) names this
// machine: "localhost" or a loopback address.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Secure reports whether u may carry a token or be trusted for keys: https,
// or http to a loopback host (local issuers, the demo, tests).
func Secure(u *url.URL) bool {
	switch u.Scheme {
	case "https":
		return u.Host != ""
	case "http":
		return Loopback(u.Hostname())
	}
	return false
}
