package exchange_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// blackHole is a loopback address that accepts connections and never
// answers, as a provider behind a dropped route does.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return ln.Addr().String()
}

// With the provider down, a 502 names the provider and what happened in
// words, never the internal address the broker tried (in production a
// VPC endpoint), and asks to be retried; the server's log keeps the
// address for the operator.
func TestAProviderThatIsDownIs502NamingItButNoAddress(t *testing.T) {
	tests := []struct {
		name     string
		opts     func(addr string) harnessOpts
		addr     func(t *testing.T) string
		policy   string
		sample   string
		provider string
		says     string
		logged   func(addr string) string
	}{
		{"STS refusing connections", func(a string) harnessOpts { return harnessOpts{awsEndpoint: "http://" + a} }, closedPort,
			"deploy-prod", "github-environment-production", "AWS STS", "could not be reached", func(a string) string { return a + ": connect: connection refused" }},
		{"STS not answering", func(a string) harnessOpts {
			return harnessOpts{awsEndpoint: "http://" + a, mintTimeout: 500 * time.Millisecond}
		}, blackHole, "deploy-prod", "github-environment-production", "AWS STS", "did not answer in time", func(string) string { return "deadline exceeded" }},
		{"Google refusing connections", func(a string) harnessOpts {
			return harnessOpts{gcpEndpoint: a, mintTimeout: time.Second}
		}, closedPort, "gcp-deploy", "github-push-main", "Google IAM Credentials", "could not be reached", func(a string) string { return a + ": connect: connection refused" }},
		{"Google not answering", func(a string) harnessOpts {
			return harnessOpts{gcpEndpoint: a, mintTimeout: 500 * time.Millisecond}
		}, blackHole, "gcp-deploy", "github-push-main", "Google IAM Credentials", "did not answer in time", func(string) string { return "deadline exceeded" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr(t)
			_, port, _ := net.SplitHostPort(addr)
			h := newHarness(t, tt.opts(addr))
			tok := h.sign(h.gh, tt.sample, nil)
			for _, r := range []response{h.exchange(tt.policy, tok, nil), h.tokenExchange(tokenForm(tt.policy, tok))} {
				if tt.policy == "deploy-prod" && r.str("error") == "invalid_target" {
					continue // /v1/token serves no aws policy
				}
				if r.status != 502 {
					t.Fatalf("got %d %s, want 502", r.status, r.raw)
				}
				d := r.str("error_description")
				if !strings.Contains(d, tt.provider) || !strings.Contains(d, tt.says) {
					t.Errorf("error_description %q does not name %q and say %q", d, tt.provider, tt.says)
				}
				for _, leak := range []string{"127.0.0.1", port, "dial", "tcp", "localhost"} {
					if strings.Contains(r.raw, leak) {
						t.Errorf("the answer shows %q: %s", leak, r.raw)
					}
				}
				if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
					t.Errorf("Retry-After %q on a provider that is down", r.header.Get("Retry-After"))
				}
			}
			// A refused connection's detail names the address; a provider
			// that never answers leaves only the SDK's word for it.
			if logs := h.logs.String(); !strings.Contains(logs, tt.logged(addr)) {
				t.Errorf("the server log does not keep the network detail (%s):\n%s", tt.logged(addr), logs)
			}
			if strings.Contains(h.logs.String(), tok) {
				t.Error("the server log holds the CI token")
			}
			// Nothing was issued: the token is not spent.
			if r := h.exchange(tt.policy, tok, nil); r.status != 502 {
				t.Errorf("a retry with the same token: %d, want the same 502", r.status)
			}
		})
	}
}
