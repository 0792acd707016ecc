// Package config loads and validates ferry.yaml.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
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
	PolicyReload Duration  `yaml:"policy_reload"` // how often to look for changed policy files; 0 disables (SIGHUP still reloads)
	RateLimit    RateLimit `yaml:"rate_limit"`
	LogLevel     string    `yaml:"log_level"` // debug | info | warn | error
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
}

// Token configures Ferry-signed tokens.
type Token struct {
	Issuer     string `yaml:"issuer"`
	SigningKey string `yaml:"signing_key"`
	// PreviousKeys are still published in the JWKS so tokens they signed
	// verify until they expire; rotate by moving signing_key here.
	PreviousKeys []string `yaml:"previous_keys"`
}

// RateLimit bounds requests per client address before any token work.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"` // 0 disables
	Burst     int     `yaml:"burst"`
}

// Duration is a time.Duration written as "30s", "15m".
type Duration time.Duration

// UnmarshalYAML parses Go duration strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"30s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as \"30s\"", n.Line, s)
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
	return Parse(data, filepath.Dir(abs), path)
}

// Parse decodes and validates config bytes; baseDir resolves relative paths
// and name labels errors.
func Parse(data []byte, baseDir, name string) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %s", name, yamlMessage(err))
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	c.resolvePaths(baseDir)
	return &c, nil
}

var typeSuffix = regexp.MustCompile(` not found in type [\w.]+`)

// yamlMessage makes yaml.v3's errors read as config errors rather than Go
// type errors ("field lisen not found in type config.Config").
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			m = typeSuffix.ReplaceAllString(m, " is not a known key")
			msgs[i] = strings.Replace(m, "field ", "key ", 1)
		}
		return strings.Join(msgs, "; ")
	}
	if errors.Is(err, io.EOF) {
		return "file is empty"
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
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
}

var issuerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func (c *Config) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if len(c.Issuers) == 0 {
		bad("issuers", "at least one issuer is required")
	}
	seen := map[string]bool{}
	for i, is := range c.Issuers {
		key := fmt.Sprintf("issuers[%d]", i)
		switch {
		case !issuerName.MatchString(is.Name):
			bad(key+".name", "%q must be lower-case letters, digits, - or _", is.Name)
		case seen[is.Name]:
			bad(key+".name", "%q is configured twice", is.Name)
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
		for _, a := range is.Audiences {
			if strings.TrimSpace(a) == "" {
				bad(key+".audiences", "empty audience")
			}
		}
	}
	switch c.Replay.Store {
	case "memory":
	case "redis":
		u, err := url.Parse(c.Replay.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			bad("replay.redis_url", "%q is not a redis:// or rediss:// URL", c.Replay.RedisURL)
		}
	default:
		bad("replay.store", "%q is not memory or redis", c.Replay.Store)
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
	if c.RateLimit.PerSecond < 0 || c.RateLimit.Burst < 0 {
		bad("rate_limit", "per_second and burst must not be negative")
	}
	if c.RateLimit.PerSecond > 0 && c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = int(c.RateLimit.PerSecond*2) + 1
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}

// checkURL accepts https URLs, and http only on loopback, where tests and
// the demo run their local issuers.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q must use https (plain http is allowed on loopback only)", raw)
	}
	return fmt.Errorf("%q must use https", raw)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
