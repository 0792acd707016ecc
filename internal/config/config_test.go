package config

import (
	"fmt"
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
		{"an unknown nested key is named", minimal + "audit: {pth: x}\n", `ferry.yaml:6:9: audit: key pth is not a known key (known keys: path)`},
		{"no issuers", "listen: 127.0.0.1:1\n", "issuers: at least one issuer is required"},
		{"an issuer without audiences", "issuers: [{name: gh, issuer: https://x.example}]\n", "ferry.yaml:1:11: issuers[0].audiences: at least one audience"},
		{"an empty audience", "issuers: [{name: gh, issuer: https://x.example, audiences: [a, ' ']}]\n", "ferry.yaml:1:64: issuers[0].audiences[1]: empty audience"},
		{"a negative burst", minimal + "rate_limit: {burst: -1}\n", "ferry.yaml:6:21: rate_limit.burst: must not be negative"},
		{"a rate that is not finite", minimal + "rate_limit: {per_second: .inf}\n", "rate_limit.per_second: want a finite number"},
		{"a second document", minimal + "---\nlisten: x\n", "ferry.yaml:7:1: a config file holds one YAML document"},
		{"a syntax error", minimal + "listen: [\n", "ferry.yaml:6:1: YAML: did not find expected node content"},
		// yaml.v3's parser (not its scanner) counts lines from 0: the
		// unclosed mapping opens on line 6, not 5.
		{"an unclosed flow mapping names its line", minimal + "rate_limit: {per_second: 1\naudit: {}\n", "ferry.yaml:6:1: YAML: did not find expected ',' or '}'"},
		{"an issuer URL with a password", "issuers: [{name: gh, issuer: 'https://u:pw@x.example', audiences: [a]}]\n", `ferry.yaml:1:30: issuers[0].issuer: "https://xxxxx@x.example" is not an absolute URL without user information`},
		{"plain http off loopback", "issuers: [{name: gh, issuer: http://x.example, audiences: [a]}]\n", "must use https"},
		{"a relative issuer URL", "issuers: [{name: gh, issuer: /x, audiences: [a]}]\n", "is not an absolute URL"},
		{"duplicate issuer names", "issuers: [{name: gh, issuer: https://a.example, audiences: [a]}, {name: gh, issuer: https://b.example, audiences: [a]}]\n", "configured twice"},
		{"a bad issuer name", "issuers: [{name: GitHub, issuer: https://a.example, audiences: [a]}]\n", "issuers[0].name"},
		{"an unknown replay store", minimal + "replay: {store: etcd}\n", `replay.store: "etcd" is not memory or redis`},
		{"redis without a URL", minimal + "replay: {store: redis}\n", "replay.redis_url"},
		{"a bad listen address", minimal + "listen: localhost\n", `ferry.yaml:6:9: listen: "localhost" is not host:port`},
		{"a signing key without an issuer", minimal + "token: {signing_key: k.pem}\n", "token.issuer: required"},
		{"a bad duration", minimal + "policy_reload: soon\n", `"soon" is not a duration`},
		{"a wrong type", minimal + "listen: [a, b]\n", "ferry.yaml:6:9: listen: want a string, got a list"},
		{"an empty file", "", "file is empty"},
		{"a bad log level", minimal + "log_level: loud\n", "log_level"},
		{"a proxy that is not an address", minimal + "trusted_proxies: [10.0.0.0/8, lb.internal]\n", `trusted_proxies[1]: "lb.internal" is not a CIDR`},
		{"a proxy range that trusts everyone", minimal + "trusted_proxies: [0.0.0.0/0]\n", "trusts every address"},
		{"a certificate without its key", minimal + "tls: {cert_file: tls.crt}\n", "ferry.yaml:6:6: tls.key_file: required when tls.cert_file is set"},
		{"a key without its certificate", minimal + "tls: {key_file: tls.key}\n", "ferry.yaml:6:6: tls.cert_file: required when tls.key_file is set"},
		{"an unknown tls key", minimal + "tls: {cert: tls.crt}\n", "tls: key cert is not a known key (known keys: cert_file, key_file)"},
		{"a redis password file without redis", minimal + "replay: {redis_password_file: pw}\n", "replay.redis_password_file: needs replay.store: redis"},
		{"a negative per-repository rate", minimal + "rate_limit: {per_repository: {per_minute: -1}}\n", "ferry.yaml:6:43: rate_limit.per_repository.per_minute: must not be negative"},
		{"a per-policy rate under one a day", minimal + "rate_limit: {per_policy: {per_minute: 0.0001}}\n", "rate_limit.per_policy.per_minute: 0.0001 is less than one request a day"},
		{"a per-policy rate that is not finite", minimal + "rate_limit: {per_policy: {per_minute: .nan}}\n", "rate_limit.per_policy.per_minute: want a finite number"},
		{"a burst without a rate", minimal + "rate_limit: {per_repository: {burst: 5}}\n", "rate_limit.per_repository.burst: needs rate_limit.per_repository.per_minute"},
		{"a burst too large", minimal + "rate_limit: {per_repository: {per_minute: 1, burst: 2000000}}\n", "rate_limit.per_repository.burst: 2000000 is more than 1000000"},
		{"a negative client cap", minimal + "rate_limit: {max_clients: -1}\n", "rate_limit.max_clients: must not be negative"},
		{"an unknown quota key", minimal + "rate_limit: {per_repository: {per_hour: 5}}\n", "rate_limit.per_repository: key per_hour is not a known key (known keys: per_minute, burst)"},
		{"a redis password in two places", minimal + "replay: {store: redis, redis_url: 'redis://:pw@cache:6379', redis_password_file: pw}\n", "replay.redis_password_file: replay.redis_url holds a password already"},
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
			if !strings.HasPrefix(err.Error(), "config ferry.yaml:") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

const contractExample = `
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

func TestParseAcceptsTheContractExample(t *testing.T) {
	c, err := Parse([]byte(contractExample), "/srv", "ferry.yaml")
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

func TestParseResolvesTLSAndPasswordPaths(t *testing.T) {
	c, err := Parse([]byte(minimal+`tls: {cert_file: tls/tls.crt, key_file: /keys/tls.key}
replay: {store: redis, redis_url: 'redis://cache:6379/0', redis_password_file: ../secrets/redis-password}
`), "/etc/ferry/config", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS.Enabled() || c.TLS.CertFile != "/etc/ferry/config/tls/tls.crt" || c.TLS.KeyFile != "/keys/tls.key" {
		t.Errorf("tls = %+v, want paths resolved against the config's directory", c.TLS)
	}
	if c.Replay.RedisPasswordFile != "/etc/ferry/secrets/redis-password" {
		t.Errorf("redis_password_file = %q", c.Replay.RedisPasswordFile)
	}
	if c.Replay.RedisURL != "redis://cache:6379/0" {
		t.Errorf("Parse changed redis_url to %q; only Load reads the password file", c.Replay.RedisURL)
	}
	plain, err := Parse([]byte(minimal), "/", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if plain.TLS.Enabled() {
		t.Error("TLS enabled without files")
	}
}

func TestLoadPutsTheRedisPasswordFileIntoTheURL(t *testing.T) {
	tests := []struct {
		name, url, file, want string
	}{
		{"a password with a newline", "redis://cache:6379/0", "s3cr3t\n", "redis://:s3cr3t@cache:6379/0"},
		{"a password with CRLF", "rediss://cache:6380", "s3cr3t\r\n", "rediss://:s3cr3t@cache:6380"},
		{"an ACL user in the URL", "redis://ferry@cache:6379/2", "s3cr3t", "redis://ferry:s3cr3t@cache:6379/2"},
		{"characters a URL must escape", "redis://cache:6379", "p@ss/w:rd", "redis://:p%40ss%2Fw%3Ard@cache:6379"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "redis-password"), []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "ferry.yaml")
			cfg := minimal + fmt.Sprintf("replay: {store: redis, redis_url: %q, redis_password_file: redis-password}\n", tt.url)
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.Replay.RedisURL != tt.want {
				t.Errorf("redis_url = %q, want %q", c.Replay.RedisURL, tt.want)
			}
		})
	}
}

func TestLoadRefusesABadRedisPasswordFile(t *testing.T) {
	tests := []struct {
		name  string
		write *string // nil: no file
		want  string
	}{
		{"a missing file", nil, "replay.redis_password_file: open "},
		{"an empty file", ptr("\n"), "is empty"},
		{"two lines", ptr("s3cr3t\nl1n3tw0\n"), "holds more than one line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.write != nil {
				if err := os.WriteFile(filepath.Join(dir, "pw"), []byte(*tt.write), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "ferry.yaml")
			cfg := minimal + "replay: {store: redis, redis_url: 'redis://cache:6379', redis_password_file: pw}\n"
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "config "+path+": ") {
				t.Errorf("err %q does not name the config file", err)
			}
			if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "l1n3tw0") {
				t.Errorf("err %q shows the file's contents", err)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// goWords are pieces of Go's vocabulary that must never reach someone
// editing ferry.yaml.
var goWords = []string{"config.", "[]", "!!", "unmarshal", "float64", "int64", "time.Duration", "reflect", "struct"}

func TestParseNamesBadTypesByKeyAndLine(t *testing.T) {
	tests := []struct {
		kind string
		yaml string
		want string
	}{
		// string
		{"string given a list", "listen: [a, b]\n", "ferry.yaml:1:9: listen: want a string, got a list"},
		{"string given a mapping", "log_level: {a: b}\n", "ferry.yaml:1:12: log_level: want a string, got a mapping"},
		{"string in a list of structs", "issuers: [{name: [gh]}]\n", "ferry.yaml:1:18: issuers[0].name: want a string, got a list"},
		// list
		{"list of structs given a number", "issuers: 5\n", "ferry.yaml:1:10: issuers: want a list of issuers, got 5"},
		{"list of structs given a mapping", "issuers: {name: gh}\n", "ferry.yaml:1:10: issuers: want a list of issuers, got a mapping"},
		{"list of strings given a string", "issuers:\n  - name: gh\n    audiences: ferry\n", `ferry.yaml:3:16: issuers[0].audiences: want a list of strings, got "ferry"`},
		{"list of strings given a list of lists", "token: {previous_keys: [[a.pem]]}\n", "ferry.yaml:1:25: token.previous_keys[0]: want a string, got a list"},
		{"list of strings given a string (token)", "token: {previous_keys: old.pem}\n", `ferry.yaml:1:24: token.previous_keys: want a list of strings, got "old.pem"`},
		// duration
		{"duration given a word", "listen: 127.0.0.1:1\npolicy_reload: fast\n", `ferry.yaml:2:16: policy_reload: "fast" is not a duration (e.g. 30s, 5m)`},
		{"duration without a unit", "policy_reload: 30\n", "ferry.yaml:1:16: policy_reload: 30 is not a duration (e.g. 30s, 5m)"},
		{"duration given a list", "policy_reload: [1s]\n", "ferry.yaml:1:16: policy_reload: want a duration (e.g. 30s, 5m), got a list"},
		{"negative duration", "policy_reload: -5s\n", `ferry.yaml:1:16: policy_reload: "-5s" must not be negative`},
		{"duration through an alias", "log_level: &d soon\npolicy_reload: *d\n", `ferry.yaml:2:16: policy_reload: "soon" is not a duration`},
		// number
		{"number given a word", "listen: 127.0.0.1:1\nrate_limit: {per_second: abc}\n", `ferry.yaml:2:26: rate_limit.per_second: want a number, got "abc"`},
		{"number given a quoted number", "rate_limit: {per_second: \"20\"}\n", `ferry.yaml:1:26: rate_limit.per_second: want a number, got "20"`},
		{"number given a list", "rate_limit: {per_second: [1]}\n", "ferry.yaml:1:26: rate_limit.per_second: want a number, got a list"},
		{"number given a boolean", "rate_limit: {per_second: true}\n", "ferry.yaml:1:26: rate_limit.per_second: want a number, got true"},
		// int
		{"int given a word", "rate_limit:\n  burst: lots\n", `ferry.yaml:2:10: rate_limit.burst: want a whole number, got "lots"`},
		{"int given a fraction", "rate_limit: {burst: 1.5}\n", "ferry.yaml:1:21: rate_limit.burst: want a whole number, got 1.5"},
		{"int too large", "rate_limit: {burst: 99999999999999999999}\n", "ferry.yaml:1:21: rate_limit.burst: want a whole number, got 99999999999999999999"},
		// nested struct
		{"struct given a string", "audit: ./audit.log\n", `ferry.yaml:1:8: audit: want a mapping (keys: path), got "./audit.log"`},
		{"struct given a list", "replay: [memory]\n", "ferry.yaml:1:9: replay: want a mapping (keys: store, redis_url, redis_password_file), got a list"},
		{"struct given a number", "rate_limit: 20\n", "ferry.yaml:1:13: rate_limit: want a mapping (keys: per_second, burst, max_clients, per_repository, per_policy), got 20"},
		{"unknown key in a struct", "token: {isuer: https://x.example}\n", "ferry.yaml:1:9: token: key isuer is not a known key (known keys: issuer, signing_key, previous_keys)"},
		// list of structs
		{"list of structs holding a number", "issuers: [5]\n", "ferry.yaml:1:11: issuers[0]: want a mapping (keys: name, issuer, audiences, jwks_url), got 5"},
		{"list of structs holding a list", "issuers:\n  - [gh]\n", "ferry.yaml:2:5: issuers[0]: want a mapping (keys: name, issuer, audiences, jwks_url), got a list"},
		{"unknown key in a list of structs", "issuers:\n  - name: gh\n  - nme: gl\n", "ferry.yaml:3:5: issuers[1]: key nme is not a known key"},
		// the document and its keys
		{"a document that is a list", "- listen\n", "ferry.yaml:1:1: want a mapping (keys: listen, policies,"},
		{"a document that is a string", "listen\n", `ferry.yaml:1:1: want a mapping (keys: listen, policies,`},
		{"a key given twice", "listen: a:1\nlisten: b:1\n", "ferry.yaml:2:1: key listen appears twice (first at line 1)"},
		{"a key that is a list", "? [listen]\n: a:1\n", "ferry.yaml:1:3: keys must be plain names, got a list"},
		{"an odd unknown key", "\"lis ten\": x\n", `ferry.yaml:1:1: key "lis ten" is not a known key`},
		{"a merge of a string", "audit: {<<: x}\n", `ferry.yaml:1:13: audit: << (merge) wants a mapping or a list of mappings, got "x"`},
		{"a merge of itself", "audit: &a {<<: *a}\n", "ferry.yaml:1:16: audit: << (merge) refers to the mapping it is in"},
		{"a bad value brought in by a merge", "audit: &a {path: [x]}\ntoken: {<<: *a}\n", "ferry.yaml:1:18: audit.path: want a string, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "/", "ferry.yaml")
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config ferry.yaml:") {
				t.Errorf("error %q does not name the file", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error:\n%s\ndoes not contain:\n%s", msg, tt.want)
			}
			for _, w := range goWords {
				if strings.Contains(msg, w) {
					t.Errorf("error %q speaks Go (%q)", msg, w)
				}
			}
		})
	}
}

func TestParseReportsEveryProblemInFileOrder(t *testing.T) {
	const in = `listen: [a]
issuers: [{name: gh, audiences: x}]
policy_reload: soon
audit: {pth: x}
`
	_, err := Parse([]byte(in), "/", "ferry.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	want := `config ferry.yaml:1:9: listen: want a string, got a list
ferry.yaml:2:33: issuers[0].audiences: want a list of strings, got "x"
ferry.yaml:3:16: policy_reload: "soon" is not a duration (e.g. 30s, 5m)
ferry.yaml:4:9: audit: key pth is not a known key (known keys: path)`
	if err.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", err, want)
	}
}

func TestParseNeverShowsARedisPassword(t *testing.T) {
	const secret = "s3cr3t"
	tests := map[string]string{
		"a URL with the wrong scheme":    "replay: {store: redis, redis_url: 'http://:s3cr3t@cache:6379'}\n",
		"a URL without a host":           "replay: {store: redis, redis_url: 'redis://:s3cr3t@'}\n",
		"a URL that does not parse":      "replay: {store: redis, redis_url: 'redis://:s3cr3t@cache:port/%zz'}\n",
		"a password holding @ and /":     "replay: {store: redis, redis_url: 'ftp://u:s3/cr@3t@cache'}\n",
		"a URL given as a list":          "replay: {store: redis, redis_url: ['redis://:s3cr3t@cache']}\n",
		"a URL given as a mapping":       "replay: {store: redis, redis_url: {url: 'redis://:s3cr3t@cache'}}\n",
		"a URL given twice":              "replay:\n  redis_url: redis://:s3cr3t@a\n  redis_url: redis://:s3cr3t@b\n",
		"a URL under a misspelled key":   "replay: {redis_ur1: 'redis://:s3cr3t@cache'}\n",
		"a URL as a key":                 "replay: {'redis://:s3cr3t@cache': x}\n",
		"a URL in place of a mapping":    "replay: 'redis://:s3cr3t@cache'\n",
		"a URL in place of a number":     "rate_limit: {per_second: 'redis://:s3cr3t@cache'}\n",
		"a URL in place of a duration":   "policy_reload: 'redis://:s3cr3t@cache'\n",
		"a URL without a scheme":         "listen: ':s3cr3t@cache'\n",
		"a URL as the listen address":    "listen: 'redis://:s3cr3t@cache'\n",
		"a URL as an issuer":             "issuers: [{name: gh, issuer: 'http://u:s3cr3t@x.example', audiences: [a]}]\n",
		"a URL and an unrelated problem": "replay: {store: redis, redis_url: 'redis://:s3cr3t@cache'}\nlog_level: loud\n",
		"a syntax error near the URL":    "replay: {store: redis, redis_url: redis://:s3cr3t@cache: x}\n",
		"a long URL":                     "listen: 'redis://:" + strings.Repeat("x", 80) + secret + "@cache'\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(in), "/", "ferry.yaml")
			if err == nil {
				t.Fatalf("accepted:\n%s", in)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "s3/cr") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestParseAcceptsAnchorsAndMergeKeys(t *testing.T) {
	const in = `issuers:
  - &github
    name: github
    issuer: https://token.actions.githubusercontent.com
    audiences: &aud [ferry]
  - <<: *github
    name: github-enterprise
    audiences: *aud
rate_limit: {per_second: 1e1, burst: 2.0}
policy_reload: ~
`
	c, err := Parse([]byte(in), "/", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Issuers) != 2 || c.Issuers[1].Name != "github-enterprise" || c.Issuers[1].Issuer != c.Issuers[0].Issuer {
		t.Errorf("issuers = %+v", c.Issuers)
	}
	if c.RateLimit.PerSecond != 10 || c.RateLimit.Burst != 2 {
		t.Errorf("rate_limit = %+v", c.RateLimit)
	}
}

func TestRateLimitDefaults(t *testing.T) {
	tests := []struct {
		yaml string
		want RateLimit
	}{
		{"", RateLimit{MaxClients: DefaultMaxClients}},
		{"rate_limit: {per_second: 20}", RateLimit{PerSecond: 20, Burst: 41, MaxClients: DefaultMaxClients}},
		{"rate_limit: {per_repository: {per_minute: 60}, per_policy: {per_minute: 2.5, burst: 1}, max_clients: 10}",
			RateLimit{MaxClients: 10, PerRepository: Quota{PerMinute: 60, Burst: 60}, PerPolicy: Quota{PerMinute: 2.5, Burst: 1}}},
		{"rate_limit: {per_policy: {per_minute: 0.5}}", RateLimit{MaxClients: DefaultMaxClients, PerPolicy: Quota{PerMinute: 0.5, Burst: 1}}},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(minimal+tt.yaml+"\n"), "/", "ferry.yaml")
		if err != nil {
			t.Errorf("%s: %v", tt.yaml, err)
			continue
		}
		if c.RateLimit != tt.want {
			t.Errorf("%s: rate_limit = %+v, want %+v", tt.yaml, c.RateLimit, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:pw@host:6379/0":  "redis://xxxxx@host:6379/0",
		"rediss://user:pw@host":    "rediss://xxxxx@host",
		"redis://:p@ss/w@host":     "redis://xxxxx@host",
		"user:pw@host":             "xxxxx@host",
		"redis://127.0.0.1:6379/0": "redis://127.0.0.1:6379/0",
		"ci@example.com":           "ci@example.com",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: no input makes Parse panic, its errors never speak Go, and
// every refusal is the checker's own, not yaml.v3's wording passed on.
func FuzzParse(f *testing.F) {
	f.Add([]byte(contractExample))
	f.Add(defaultYAML)
	f.Add([]byte(minimal))
	f.Add([]byte("issuers:\n  - &gh {name: github, issuer: https://x.example, audiences: [a]}\n  - <<: *gh\n    name: b\n"))
	f.Add([]byte("audit: &a {<<: *a}\n"))
	f.Add([]byte("replay: {store: redis, redis_url: 'redis://:s3cr3t@cache'}\n"))
	f.Add([]byte("x: 1\n---\ny: 2\n"))
	f.Add([]byte("? [listen]\n: a\n"))
	for _, in := range []string{
		"listen: [a, b]\n", "issuers: 5\n", "issuers: [5]\n", "policy_reload: fast\n", "policy_reload: [1s]\n",
		"rate_limit: {per_second: abc}\n", "rate_limit: {burst: 1.5}\n", "audit: x\n", "token: {previous_keys: k}\n",
		"rate_limit: {per_second: .nan}\n", "listen: a:1\nlisten: b:1\n", "lisen: x\n", "- a\n",
		"tls: {cert_file: c}\n", "replay: {redis_password_file: [p]}\n",
	} {
		f.Add([]byte(minimal + in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse(data, "/", "ferry.yaml")
		if err == nil {
			return
		}
		msg := err.Error()
		if strings.Contains(msg, "config.") && !strings.Contains(string(data), "config") && !strings.Contains(string(data), `\`) {
			t.Errorf("error names a Go type: %s", msg)
		}
		if _, _, unforeseen := decode("ferry.yaml", data); unforeseen {
			t.Errorf("yaml.v3 refused what the checker passed: %s", msg)
		}
	})
}

func TestParseBoundsAliasExpansion(t *testing.T) {
	// Each mapping merges the one before it twice: 2^40 mappings in all.
	var b strings.Builder
	b.WriteString("issuers:\n  - &m0 {name: a}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	start := time.Now()
	_, err := Parse([]byte(b.String()), "/", "ferry.yaml")
	if err == nil || !strings.Contains(err.Error(), "aliases expand the file to too many values") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestTrustedProxiesAreReadAsNetworks(t *testing.T) {
	c, err := Parse([]byte(minimal+"trusted_proxies: [10.1.2.3/8, 192.0.2.7, '2001:db8::/32']\n"), "/", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := c.TrustedProxyNets()
	want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}
	if len(got) != len(want) {
		t.Fatalf("TrustedProxyNets = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("TrustedProxyNets[%d] = %s, want %s", i, got[i], want[i])
		}
	}
}

// The README's ferry.yaml is what people copy: it must load, and show
// every key the config knows.
func TestTheREADMEExampleParses(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "\n```yaml\nlisten:")
	block, _, closed := strings.Cut(rest, "\n```")
	if !ok || !closed {
		t.Fatal("README has no ```yaml block starting with listen:")
	}
	block = "listen:" + block
	c, err := Parse([]byte(block), "/srv/ferry", "README.md")
	if err != nil {
		t.Fatalf("the README's example does not load: %v", err)
	}
	if !c.TLS.Enabled() || c.TLS.CertFile != "/srv/ferry/tls.crt" {
		t.Errorf("tls = %+v", c.TLS)
	}
	if c.GitHubApp.PrivateKey != "/srv/ferry/github-app.pem" || c.GitHubApp.AppID == 0 {
		t.Errorf("github_app = %+v", c.GitHubApp)
	}
	for _, key := range []string{"tls:", "cert_file:", "key_file:", "redis_password_file:", "previous_keys:", "trusted_proxies:", "github_app:", "api_url:"} {
		if !strings.Contains(block, key) {
			t.Errorf("the README's example does not show %s", key)
		}
	}
}
