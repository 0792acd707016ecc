package config

import (
	"strings"

	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// DefaultGitHubAPI is github.com's REST API, where github_app points unless
// it names a GitHub Enterprise Server.
const DefaultGitHubAPI = "https://api.github.com"

// GitHubApp is the GitHub App the broker acts as for github grants: it
// mints the App's installation tokens, scoped per policy. The block is
// absent (zero) on a broker that mints no GitHub tokens.
type GitHubApp struct {
	AppID int64 `yaml:"app_id"`
	// PrivateKey is the path of the App's RSA private key (PEM), read when
	// the broker starts. The key itself never sits in ferry.yaml, and no
	// error or log line shows it.
	PrivateKey string `yaml:"private_key"`
	// APIURL is the REST API root: https://api.github.com, or
	// https://HOST/api/v3 for GitHub Enterprise Server.
	APIURL string `yaml:"api_url"`
}

// Enabled reports whether the config asks for a GitHub App.
func (g GitHubApp) Enabled() bool { return g.AppID != 0 || g.PrivateKey != "" || g.APIURL != "" }

func (g *GitHubApp) applyDefaults() {
	if g.Enabled() && g.APIURL == "" {
		g.APIURL = DefaultGitHubAPI
	}
	// One spelling of the root, so that what the broker recorded at mint
	// compares equal at release.
	g.APIURL = strings.TrimRight(g.APIURL, "/")
}

// validate reports the block's problems by key path.
func (g GitHubApp) validate(file string) []yamlpos.Problem {
	if !g.Enabled() {
		return nil
	}
	var problems []yamlpos.Problem
	bad := func(path, msg string) {
		problems = append(problems, yamlpos.Problem{File: file, Path: "github_app." + path, Message: msg})
	}
	if g.AppID <= 0 {
		bad("app_id", "required: the App's numeric id, on the App's settings page (About: App ID)")
	}
	switch k := g.PrivateKey; {
	case k == "":
		bad("private_key", "required: the path of the App's private key (PEM)")
	case strings.Contains(k, "PRIVATE KEY") || strings.ContainsAny(k, "\r\n"):
		// Never quoted: it is the key.
		bad("private_key", "must be the path of the PEM file, not the key itself: the key must not sit in ferry.yaml")
	}
	if err := checkURL(g.APIURL); err != nil {
		bad("api_url", err.Error()+" (github.com: https://api.github.com; GitHub Enterprise Server: https://HOST/api/v3)")
	}
	return problems
}
