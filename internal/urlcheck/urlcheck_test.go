package urlcheck

import (
	"net/url"
	"strings"
	"testing"
)

func TestSecure(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{"https://ferry.example.com", true},
		{"https://ferry.example.com:8443/base", true},
		{"http://127.0.0.1:8080", true},
		{"http://127.8.9.10", true},
		{"http://[::1]:8080", true},
		{"http://localhost:5000", true},
		{"http://ferry.example.com", false},
		{"http://10.0.0.1", false},
		{"http://localhost.evil.example", false},
		{"http://127.0.0.1.nip.io", false},
		{"ftp://127.0.0.1", false},
		{"https://", false},
		{"ferry.example.com", false},
		{"HTTP://ferry.example.com", false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.raw)
		if err != nil {
			t.Fatalf("%s: %v", tt.raw, err)
		}
		if got := Secure(u); got != tt.want {
			t.Errorf("Secure(%s) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestEndpointRefusesWhatAKeyURLMustNotHold(t *testing.T) {
	tests := []struct {
		raw  string
		want string // "" when accepted
	}{
		{"https://token.actions.githubusercontent.com", ""},
		{"https://gitlab.example.com/oauth/discovery/keys", ""},
		{"http://127.0.0.1:9000", ""},
		{"https://user:secret@issuer.example.com", "without user information"},
		{"https://issuer.example.com/?tenant=x", "without user information, query"},
		{"https://issuer.example.com/#frag", "fragment"},
		{"/relative/path", "absolute"},
		{"http://issuer.example.com", "must use https"},
		{"::not a url", "absolute"},
	}
	for _, tt := range tests {
		err := Endpoint(tt.raw)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Endpoint(%q) = %v, want nil", tt.raw, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Endpoint(%q) = %v, want an error saying %q", tt.raw, err, tt.want)
		case err != nil && strings.Contains(err.Error(), "secret"):
			t.Errorf("Endpoint(%q) repeats the URL: %v", tt.raw, err)
		}
	}
}
