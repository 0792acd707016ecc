package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
issuers:
  - name: github
    issuer: https://token.actions.githubusercontent.com
    audiences: [ferry]
`

func TestParseAppliesDefaultsAndResolvesPaths(t *testing.T) {
	c, err := Parse([]byte(minimal+"audit: {path: logs/audit.log}\n"), "/etc/ferry", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.Replay.Store != "memory" {
		t.Errorf("defaults not applied: listen=%q store=%q", c.Listen, c.Replay.Store)
	}
	if c.Policies != "/etc/ferry/trustpolicies" {
		t.Errorf("policies = %q, want resolved against the config's directory", c.Policies)
	}
	if c.Audit.Path != "/etc/ferry/logs/audit.log" {
		t.Errorf("audit.path = %q", c.Audit.Path)
	}
}

func TestParseRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"an unknown top-level key is named", minimal + "lisen: :80\n", `key lisen is not a known key`},
		{"an unknown nested key is named", minimal + "audit: {pth: x}\n", `key pth is not a known key`},
		{"no issuers", "listen: 127.0.0.1:1\n", "issuers: at least one issuer is required"},
		{"an issuer without audiences", "issuers: [{name: gh, issuer: https://x.example}]\n", "issuers[0].audiences"},
		{"plain http off loopback", "issuers: [{name: gh, issuer: http://x.example, audiences: [a]}]\n", "must use https"},
		{"a relative issuer URL", "issuers: [{name: gh, issuer: /x, audiences: [a]}]\n", "is not an absolute URL"},
		{"duplicate issuer names", "issuers: [{name: gh, issuer: https://a.example, audiences: [a]}, {name: gh, issuer: https://b.example, audiences: [a]}]\n", "configured twice"},
		{"a bad issuer name", "issuers: [{name: GitHub, issuer: https://a.example, audiences: [a]}]\n", "issuers[0].name"},
		{"an unknown replay store", minimal + "replay: {store: etcd}\n", `replay.store: "etcd" is not memory or redis`},
		{"redis without a URL", minimal + "replay: {store: redis}\n", "replay.redis_url"},
		{"a bad listen address", minimal + "listen: localhost\n", `listen: "localhost" is not host:port`},
		{"a signing key without an issuer", minimal + "token: {signing_key: k.pem}\n", "token.issuer: required"},
		{"a bad duration", minimal + "policy_reload: soon\n", `"soon" is not a duration`},
		{"a wrong type", minimal + "listen: [a, b]\n", "cannot unmarshal"},
		{"an empty file", "", "file is empty"},
		{"a bad log level", minimal + "log_level: loud\n", "log_level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "/", "ferry.yaml")
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "config ferry.yaml: ") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestParseAcceptsTheContractExample(t *testing.T) {
	const example = `
listen: 127.0.0.1:8080
policies: ./trustpolicies
issuers:
  - name: github
    issuer: https://token.actions.githubusercontent.com
    audiences: [ferry]
    jwks_url: ""
  - name: gitlab
    issuer: https://gitlab.com
    audiences: [ferry]
audit:
  path: ./audit.log
replay:
  store: memory
  redis_url: redis://127.0.0.1:6379/0
token:
  issuer: https://ferry.example.com
  signing_key: ./ferry-signing.pem
`
	c, err := Parse([]byte(example), "/srv", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.IssuerNames(); len(got) != 2 || got[0] != "github" || got[1] != "gitlab" {
		t.Errorf("issuers = %v", got)
	}
	if c.Token.SigningKey != "/srv/ferry-signing.pem" {
		t.Errorf("signing_key = %q", c.Token.SigningKey)
	}
}

func TestDefaultIsValid(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.PolicyReload) != 30*time.Second || c.RateLimit.Burst != 40 {
		t.Errorf("defaults: reload=%v burst=%d", time.Duration(c.PolicyReload), c.RateLimit.Burst)
	}
}

func TestLoadReadsAFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Policies != filepath.Join(dir, "trustpolicies") {
		t.Errorf("policies = %q", c.Policies)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file was accepted")
	}
}
