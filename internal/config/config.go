// Package config loads and validates ferry.yaml.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/urlcheck"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// Config is ferry.yaml. Paths in it are resolved against the directory of
// the file they were read from, as kubeconfig does, so a config works the
// same whatever directory the broker is started in.
type Config struct {
	Listen   string   `yaml:"listen"`
	Policies string   `yaml:"policies"`
	Issuers  []Issuer `yaml:"issuers"`
	Audit    Audit    `yaml:"audit"`
	Replay   Replay   `yaml:"replay"`
	Token    Token    `yaml:"token"`

	// Additions to the contract.
	TLS          TLS       `yaml:"tls"`
	PolicyReload Duration  `yaml:"policy_reload"` // how often to look for changed policy files; 0 disables (SIGHUP still reloads)
	RateLimit    RateLimit `yaml:"rate_limit"`
	LogLevel     string    `yaml:"log_level"` // debug | info | warn | error
	// TrustedProxies are the load balancers and ingresses in front of the
	// broker (CIDRs or addresses). A request from one of them is rate
	// limited and audited under the client address it puts in
	// X-Forwarded-For; from anywhere else the header is ignored, since any
	// caller could write it.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// GitHubApp lets the broker mint GitHub App installation tokens (grant
	// kind github).
	GitHubApp GitHubApp `yaml:"github_app"`
}

// TrustedProxyNets parses TrustedProxies; Parse has already refused any
// entry it cannot read.
func (c *Config) TrustedProxyNets() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for _, p := range c.TrustedProxies {
		if n, err := parseProxy(p); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// parseProxy reads a CIDR, or a single address as its own /32 or /128.
func parseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Issuer is one trusted CI token issuer.
type Issuer struct {
	Name      string   `yaml:"name"`
	Issuer    string   `yaml:"issuer"`
	Audiences []string `yaml:"audiences"`
	JWKSURL   string   `yaml:"jwks_url"`
}

// Audit says where decisions are recorded.
type Audit struct {
	Path string `yaml:"path"` // "-" for stdout
}

// Replay configures the single-use jti store.
type Replay struct {
	Store    string `yaml:"store"` // memory | redis
	RedisURL string `yaml:"redis_url"`
	// RedisPasswordFile holds the Redis password, so that it can live in a
	// secret volume rather than in the config file (a Kubernetes ConfigMap
	// is readable by many). Load reads it into RedisURL.
	RedisPasswordFile string `yaml:"redis_password_file"`
}

// TLS makes the broker serve HTTPS itself. Both files or neither; the pair
// is read again when the files change, so a renewed certificate needs no
// restart.
type TLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate chain, leaf first
	KeyFile  string `yaml:"key_file"`  // PEM private key
}

// Enabled reports whether the broker serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Token configures Ferry-signed tokens.
type Token struct {
	Issuer     string `yaml:"issuer"`
	SigningKey string `yaml:"signing_key"`
	// PreviousKeys are still published in the JWKS so tokens they signed
	// verify until they expire; rotate by moving signing_key here.
	PreviousKeys []string `yaml:"previous_keys"`
}

// RateLimit bounds requests per client address before any token work, and
// per repository or project and per policy once the token is verified.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"` // per client address (an IPv6 /64 counts as one); 0 disables
	Burst     int     `yaml:"burst"`
	// MaxClients caps the client addresses one replica keeps buckets for;
	// at the cap a new address is refused (429) until buckets refill.
	MaxClients int `yaml:"max_clients"`
	// PerRepository limits each issuer's repository or project (the job's
	// platform.Job.Who), PerPolicy each policy, across replicas when
	// replay.store is redis. Only a verified token can spend them, and
	// only a request its policy allows spends PerPolicy.
	PerRepository Quota `yaml:"per_repository"`
	PerPolicy     Quota `yaml:"per_policy"`
}

// Quota is a rate a minute with a burst.
type Quota struct {
	PerMinute float64 `yaml:"per_minute"` // 0 disables
	Burst     int     `yaml:"burst"`      // default: one minute's worth
}

// Limits of the rate_limit values, so that a bucket's arithmetic stays in
// range (one request a day at the slowest).
const (
	DefaultMaxClients = 100_000
	minPerMinute      = 1.0 / (24 * 60)
	maxBurst          = 1_000_000
)

// Duration is a time.Duration written as "30s", "15m".
type Duration time.Duration

const durationWant = "a duration (e.g. 30s, 5m)"

// UnmarshalYAML parses Go duration strings. Its errors say what is wrong
// with the value only: the caller names the key and the line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want %s, got %s", durationWant, got(n))
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("want %s, got %s", durationWant, got(n))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s is not a duration (e.g. 30s, 5m)", got(n))
	}
	if v < 0 {
		return fmt.Errorf("%s must not be negative", got(n))
	}
	*d = Duration(v)
	return nil
}

//go:embed default.yaml
var defaultYAML []byte

// Default returns the embedded defaults that `ferry serve` runs on when no
// config file is given: GitHub and gitlab.com, audience "ferry", the policies
// in ./trustpolicies.
func Default() (*Config, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("default config: %w", err)
	}
	return Parse(defaultYAML, wd, "(embedded defaults)")
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, filepath.Dir(abs), path)
	if err != nil {
		return nil, err
	}
	if err := c.readRedisPassword(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// readRedisPassword puts the password from replay.redis_password_file into
// RedisURL, so every user of the URL (replay store, shared limits) has it.
// One trailing newline is dropped: `echo pw > file` and
// `kubectl create secret --from-file` both leave one.
func (c *Config) readRedisPassword() error {
	r := &c.Replay
	if r.RedisPasswordFile == "" {
		return nil
	}
	data, err := os.ReadFile(r.RedisPasswordFile)
	if err != nil {
		return fmt.Errorf("replay.redis_password_file: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	switch {
	case pw == "":
		return fmt.Errorf("replay.redis_password_file: %s is empty", r.RedisPasswordFile)
	case strings.ContainsAny(pw, "\r\n"):
		return fmt.Errorf("replay.redis_password_file: %s holds more than one line", r.RedisPasswordFile)
	}
	u, err := url.Parse(r.RedisURL)
	if err != nil {
		return errors.New("replay.redis_url: does not parse") // validate has refused this already
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, pw)
	r.RedisURL = u.String()
	return nil
}

// Parse decodes and validates config bytes; baseDir resolves relative paths
// and name labels errors. Every problem is reported, each as
// "name:line:col: key.path: what is wrong", in the words of the file rather
// than of Go, and without echoing credentials.
func Parse(data []byte, baseDir, name string) (*Config, error) {
	c, problems, _ := decode(name, data)
	if len(problems) > 0 {
		return nil, &parseError{problems: problems}
	}
	c.resolvePaths(baseDir)
	return c, nil
}

// decode checks data against the Config struct key by key, so that unknown
// keys and values of the wrong type are named by key path and position,
// then decodes and validates it. unforeseen is set when yaml.v3 refused what
// the checker passed.
func decode(file string, data []byte) (_ *Config, _ []yamlpos.Problem, unforeseen bool) {
	root, problems := readDocument(file, data)
	if len(problems) > 0 {
		return nil, problems, false
	}
	if root != nil {
		ch := newChecker(file)
		ch.value(root, reflect.TypeOf(Config{}), "")
		if len(ch.problems) > 0 {
			yamlpos.Sort(ch.problems)
			return nil, ch.problems, false
		}
	}
	// yaml.v3 still decodes, strictly, as a second opinion.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, unexplained(file, err), true
	}
	c.applyDefaults()
	problems = c.validate(file)
	for i := range problems {
		problems[i] = at(problems[i], locate(root, problems[i].Path))
	}
	yamlpos.Sort(problems)
	return &c, problems, false
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.Policies == "" {
		c.Policies = "./trustpolicies"
	}
	if c.Audit.Path == "" {
		c.Audit.Path = "./audit.log"
	}
	if c.Replay.Store == "" {
		c.Replay.Store = "memory"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	c.GitHubApp.applyDefaults()
	if r := &c.RateLimit; r.PerSecond > 0 && r.Burst == 0 {
		r.Burst = int(math.Min(r.PerSecond*2, math.MaxInt32)) + 1
	}
	if c.RateLimit.MaxClients == 0 {
		c.RateLimit.MaxClients = DefaultMaxClients
	}
	for _, q := range []*Quota{&c.RateLimit.PerRepository, &c.RateLimit.PerPolicy} {
		if q.PerMinute > 0 && q.Burst == 0 {
			q.Burst = int(math.Min(math.Ceil(q.PerMinute), maxBurst))
		}
	}
}

var issuerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// validate reports values that decode but make no sense, by key path.
func (c *Config) validate(file string) []yamlpos.Problem {
	var problems []yamlpos.Problem
	bad := func(path, format string, args ...any) {
		problems = append(problems, yamlpos.Problem{File: file, Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		bad("listen", "%s is not host:port", quote(c.Listen))
	}
	if len(c.Issuers) == 0 {
		bad("issuers", "at least one issuer is required")
	}
	seen := map[string]bool{}
	for i, is := range c.Issuers {
		key := fmt.Sprintf("issuers[%d]", i)
		switch {
		case !issuerName.MatchString(is.Name):
			bad(key+".name", "%s must be lower-case letters, digits, - or _", quote(is.Name))
		case seen[is.Name]:
			bad(key+".name", "%s is configured twice", quote(is.Name))
		}
		seen[is.Name] = true
		if err := checkURL(is.Issuer); err != nil {
			bad(key+".issuer", "%v", err)
		}
		if is.JWKSURL != "" {
			if err := checkURL(is.JWKSURL); err != nil {
				bad(key+".jwks_url", "%v", err)
			}
		}
		if len(is.Audiences) == 0 {
			bad(key+".audiences", "at least one audience is required: without it a token minted for any other service would be accepted")
		}
		for j, a := range is.Audiences {
			if strings.TrimSpace(a) == "" {
				bad(fmt.Sprintf("%s.audiences[%d]", key, j), "empty audience")
			}
		}
	}
	switch c.Replay.Store {
	case "memory":
	case "redis":
		if c.Replay.RedisURL == "" {
			bad("replay.redis_url", "required when replay.store is redis")
			break
		}
		u, err := url.Parse(c.Replay.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			bad("replay.redis_url", "%s is not a redis:// or rediss:// URL", quote(c.Replay.RedisURL))
		}
	default:
		bad("replay.store", "%s is not memory or redis", quote(c.Replay.Store))
	}
	if c.Replay.RedisPasswordFile != "" {
		if c.Replay.Store != "redis" {
			bad("replay.redis_password_file", "needs replay.store: redis")
		} else if u, err := url.Parse(c.Replay.RedisURL); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				bad("replay.redis_password_file", "replay.redis_url holds a password already; give it in one place")
			}
		}
	}
	switch t := c.TLS; {
	case t.CertFile != "" && t.KeyFile == "":
		bad("tls.key_file", "required when tls.cert_file is set")
	case t.KeyFile != "" && t.CertFile == "":
		bad("tls.cert_file", "required when tls.key_file is set")
	}
	if c.Token.Issuer != "" {
		if err := checkURL(c.Token.Issuer); err != nil {
			bad("token.issuer", "%v", err)
		}
	}
	if c.Token.SigningKey != "" && c.Token.Issuer == "" {
		bad("token.issuer", "required when token.signing_key is set")
	}
	if len(c.Token.PreviousKeys) > 0 && c.Token.SigningKey == "" {
		bad("token.previous_keys", "needs token.signing_key: the newest key signs")
	}
	switch r := c.RateLimit; {
	case math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0):
		bad("rate_limit.per_second", "want a finite number, got %v", r.PerSecond)
	case r.PerSecond < 0:
		bad("rate_limit.per_second", "must not be negative, got %v", r.PerSecond)
	}
	if c.RateLimit.Burst < 0 {
		bad("rate_limit.burst", "must not be negative, got %d", c.RateLimit.Burst)
	}
	if c.RateLimit.MaxClients < 0 {
		bad("rate_limit.max_clients", "must not be negative, got %d", c.RateLimit.MaxClients)
	}
	for key, q := range map[string]Quota{"per_repository": c.RateLimit.PerRepository, "per_policy": c.RateLimit.PerPolicy} {
		key = "rate_limit." + key
		switch {
		case math.IsNaN(q.PerMinute) || math.IsInf(q.PerMinute, 0):
			bad(key+".per_minute", "want a finite number, got %v", q.PerMinute)
		case q.PerMinute < 0:
			bad(key+".per_minute", "must not be negative, got %v", q.PerMinute)
		case q.PerMinute > 0 && q.PerMinute < minPerMinute:
			bad(key+".per_minute", "%v is less than one request a day; use 0 to disable the limit", q.PerMinute)
		}
		switch {
		case q.Burst < 0:
			bad(key+".burst", "must not be negative, got %d", q.Burst)
		case q.Burst > maxBurst:
			bad(key+".burst", "%d is more than %d", q.Burst, maxBurst)
		case q.Burst > 0 && q.PerMinute == 0:
			bad(key+".burst", "needs %s.per_minute", key)
		}
	}
	for i, p := range c.TrustedProxies {
		n, err := parseProxy(p)
		switch {
		case err != nil:
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%s is not a CIDR such as 10.0.0.0/8 or an IP address", quote(p))
		case n.Bits() == 0:
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%s trusts every address to name its own client address", quote(p))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%s is not debug, info, warn or error", quote(c.LogLevel))
	}
	return append(problems, c.GitHubApp.validate(file)...)
}

// checkURL applies urlcheck's rule for issuer and key URLs, quoting the
// value as config errors do: redacted, cut short.
func checkURL(raw string) error {
	if err := urlcheck.Endpoint(raw); err != nil {
		return fmt.Errorf("%s %w", quote(raw), err)
	}
	return nil
}

func (c *Config) resolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || p == "-" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.Policies = abs(c.Policies)
	c.Audit.Path = abs(c.Audit.Path)
	c.Token.SigningKey = abs(c.Token.SigningKey)
	c.Replay.RedisPasswordFile = abs(c.Replay.RedisPasswordFile)
	c.TLS.CertFile = abs(c.TLS.CertFile)
	c.TLS.KeyFile = abs(c.TLS.KeyFile)
	c.GitHubApp.PrivateKey = abs(c.GitHubApp.PrivateKey)
	for i, p := range c.Token.PreviousKeys {
		c.Token.PreviousKeys[i] = abs(p)
	}
}

// IssuerNames lists the configured issuer names.
func (c *Config) IssuerNames() []string {
	names := make([]string, len(c.Issuers))
	for i, is := range c.Issuers {
		names[i] = is.Name
	}
	return names
}
