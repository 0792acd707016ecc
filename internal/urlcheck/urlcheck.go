// Package urlcheck holds the one rule for where Ferry sends or accepts
// things over HTTP: TLS, or plain HTTP to this machine only.
package urlcheck

import (
	"errors"
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

// Endpoint checks raw as a URL Ferry fetches keys from or names as an
// issuer: absolute, with no user information (a password must not sit in
// config or a discovery document), query or fragment, and Secure. The
// error says what is wrong without repeating raw: callers quote it as
// they show values.
func Endpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("is not an absolute URL without user information, query or fragment")
	}
	if !Secure(u) {
		return errors.New("must use https (plain http is allowed on loopback only)")
	}
	return nil
}
