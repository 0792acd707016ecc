package config

import (
	"strings"
	"testing"
)

func TestGitHubAppIsReadWithDefaultsAndItsKeyPathResolved(t *testing.T) {
	c, err := Parse([]byte(minimal+"github_app: {app_id: 123456, private_key: keys/app.pem}\n"), "/etc/ferry", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := GitHubApp{AppID: 123456, PrivateKey: "/etc/ferry/keys/app.pem", APIURL: "https://api.github.com"}
	if c.GitHubApp != want || !c.GitHubApp.Enabled() {
		t.Errorf("github_app = %+v, want %+v", c.GitHubApp, want)
	}
}

func TestGitHubAppTakesAnEnterpriseServer(t *testing.T) {
	c, err := Parse([]byte(minimal+"github_app: {app_id: 7, private_key: /k.pem, api_url: 'https://ghes.acme.example/api/v3/'}\n"), "/", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.GitHubApp.APIURL != "https://ghes.acme.example/api/v3" {
		t.Errorf("api_url = %q, want it without the trailing slash", c.GitHubApp.APIURL)
	}
}

func TestNoGitHubAppMeansNone(t *testing.T) {
	c, err := Parse([]byte(minimal), "/", "ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.GitHubApp.Enabled() || c.GitHubApp != (GitHubApp{}) {
		t.Errorf("github_app = %+v, want none", c.GitHubApp)
	}
}

func TestGitHubAppRefusals(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"no app id", "github_app: {private_key: k.pem}\n", "ferry.yaml:6:13: github_app.app_id: required"},
		{"a negative app id", "github_app: {app_id: -1, private_key: k.pem}\n", "github_app.app_id: required"},
		{"an app id that is a word", "github_app: {app_id: ferry, private_key: k.pem}\n", `ferry.yaml:6:22: github_app.app_id: want a whole number, got "ferry"`},
		{"no private key", "github_app: {app_id: 1}\n", "ferry.yaml:6:13: github_app.private_key: required"},
		{"plain http to another host", "github_app: {app_id: 1, private_key: k.pem, api_url: 'http://ghes.acme.example/api/v3'}\n", "github_app.api_url: \"http://ghes.acme.example/api/v3\" must use https"},
		{"an API URL with a password", "github_app: {app_id: 1, private_key: k.pem, api_url: 'https://u:pw@ghes.acme.example'}\n", "github_app.api_url: \"https://xxxxx@ghes.acme.example\" is not an absolute URL"},
		{"an API URL that is not one", "github_app: {app_id: 1, private_key: k.pem, api_url: ghes.acme.example}\n", "is not an absolute URL"},
		{"an unknown key", "github_app: {app_id: 1, private_key: k.pem, client_secret: x}\n", "github_app: key client_secret is not a known key (known keys: app_id, private_key, api_url)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal+tt.yaml), "/", "ferry.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// A key pasted into ferry.yaml is refused without the error showing it.
func TestGitHubAppKeyInTheConfigIsRefusedUnshown(t *testing.T) {
	for _, key := range []string{
		"private_key: |\n    -----BEGIN RSA PRIVATE KEY-----\n    MIIEowIBAAKCAQEAsecretsecret\n    -----END RSA PRIVATE KEY-----\n",
		"private_key: '-----BEGIN PRIVATE KEY----- MIIEowIBAAKCAQEAsecretsecret -----END PRIVATE KEY-----'\n",
	} {
		_, err := Parse([]byte(minimal+"github_app:\n  app_id: 1\n  "+key), "/", "ferry.yaml")
		if err == nil || !strings.Contains(err.Error(), "github_app.private_key: must be the path of the PEM file, not the key itself") {
			t.Errorf("error %v, want the key refused", err)
		}
		if err != nil && strings.Contains(err.Error(), "secretsecret") {
			t.Errorf("the error shows the key: %v", err)
		}
	}
}
