package ghapp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
)

func writePEM(t *testing.T, typ string, der []byte, headers map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKeyFileTakesGitHubsKeyAndPKCS8(t *testing.T) {
	pkcs8, err := x509.MarshalPKCS8PrivateKey(appKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(appKey()), nil),
		writePEM(t, "PRIVATE KEY", pkcs8, nil),
	} {
		k, err := ghapp.LoadKeyFile(p)
		if err != nil || !k.Equal(appKey()) {
			t.Errorf("LoadKeyFile: %v", err)
		}
	}
}

func TestLoadKeyFileRefusals(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	garbage := []byte("MIIEsecretkeymaterialthatmustnotshow")
	notPEM := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(notPEM, []byte("secretkeymaterialthatmustnotshow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path, want string }{
		{"no file", filepath.Join(t.TempDir(), "none.pem"), "no such file"},
		{"not PEM", notPEM, "no PEM block"},
		{"a public key", writePEM(t, "PUBLIC KEY", garbage, nil), `a PEM block of type "PUBLIC KEY" is not a private key`},
		{"a PKCS #1 block that does not parse", writePEM(t, "RSA PRIVATE KEY", garbage, nil), "does not parse as a PKCS #1 key"},
		{"an encrypted key", writePEM(t, "RSA PRIVATE KEY", garbage, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}), "the key is encrypted"},
		{"an ECDSA key", writePEM(t, "PRIVATE KEY", ecDER, nil), "GitHub Apps sign with RSA keys"},
		{"a 1024-bit key", writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small), nil), "the RSA key is 1024 bits; at least 2048 are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ghapp.LoadKeyFile(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secretkeymaterial") {
				t.Errorf("the error shows the file: %v", err)
			}
		})
	}
}

func TestNewMinterFromTheConfig(t *testing.T) {
	env := func(app config.GitHubApp) grant.Env {
		return grant.Env{Config: &config.Config{GitHubApp: app}, Logger: slog.New(slog.DiscardHandler)}
	}
	if m, err := (ghapp.Kind{}).NewMinter(context.Background(), env(config.GitHubApp{})); m != nil || err != nil {
		t.Errorf("no github_app: minter %v, %v; want none", m, err)
	}
	key := writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(appKey()), nil)
	m, err := (ghapp.Kind{}).NewMinter(context.Background(), env(config.GitHubApp{AppID: 1, PrivateKey: key, APIURL: "https://ghes.acme.example/api/v3"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*ghapp.Minter).APIURL(); got != "https://ghes.acme.example/api/v3" {
		t.Errorf("api url %q", got)
	}
	_, err = (ghapp.Kind{}).NewMinter(context.Background(), env(config.GitHubApp{AppID: 1, PrivateKey: filepath.Join(t.TempDir(), "none.pem"), APIURL: config.DefaultGitHubAPI}))
	if err == nil || !strings.HasPrefix(err.Error(), "github_app.private_key: ") {
		t.Errorf("a missing key: %v", err)
	}
}

func TestNewRefusesAnInsecureAPI(t *testing.T) {
	_, err := ghapp.New(ghapp.Options{AppID: 1, Key: appKey(), APIURL: "http://ghes.acme.example/api/v3"})
	if err == nil || !strings.Contains(err.Error(), "must use https") {
		t.Errorf("error %v", err)
	}
}
