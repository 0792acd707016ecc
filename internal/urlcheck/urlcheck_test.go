package urlcheck

import (
	"net/url"
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
