package tokensign_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

func writePEM(t *testing.T, blocks ...*pem.Block) string {
	t.Helper()
	var buf bytes.Buffer
	for _, b := range blocks {
		pem.Encode(&buf, b)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pkcs8(t *testing.T, k any) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func sec1(t *testing.T, k *ecdsa.PrivateKey) *pem.Block {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadKeyFileReadsEverySupportedKindWithItsAlgorithm(t *testing.T) {
	rsa2048 := rsaKey(t, 2048)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256 := ecKey(t, elliptic.P256())
	tests := []struct {
		name   string
		blocks func(t *testing.T) []*pem.Block
		alg    jose.SignatureAlgorithm
	}{
		{"an RSA-2048 PKCS#1 key signs RS256", func(t *testing.T) []*pem.Block {
			return []*pem.Block{{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa2048)}}
		}, jose.RS256},
		{"an RSA-2048 PKCS#8 key signs RS256", func(t *testing.T) []*pem.Block { return []*pem.Block{pkcs8(t, rsa2048)} }, jose.RS256},
		{"a P-256 PKCS#8 key signs ES256", func(t *testing.T) []*pem.Block { return []*pem.Block{pkcs8(t, p256)} }, jose.ES256},
		{"a P-256 SEC 1 key signs ES256", func(t *testing.T) []*pem.Block { return []*pem.Block{sec1(t, p256)} }, jose.ES256},
		{"a SEC 1 key after openssl's EC PARAMETERS block loads", func(t *testing.T) []*pem.Block {
			return []*pem.Block{{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}, sec1(t, p256)}
		}, jose.ES256},
		{"a P-384 key signs ES384", func(t *testing.T) []*pem.Block { return []*pem.Block{pkcs8(t, ecKey(t, elliptic.P384()))} }, jose.ES384},
		{"a P-521 key signs ES512", func(t *testing.T) []*pem.Block { return []*pem.Block{sec1(t, ecKey(t, elliptic.P521()))} }, jose.ES512},
		{"an Ed25519 PKCS#8 key signs EdDSA", func(t *testing.T) []*pem.Block { return []*pem.Block{pkcs8(t, ed)} }, jose.EdDSA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePEM(t, tt.blocks(t)...)
			k, err := tokensign.LoadKeyFile(path)
			if err != nil {
				t.Fatalf("LoadKeyFile: %v", err)
			}
			if k.Alg != tt.alg {
				t.Errorf("alg = %s, want %s", k.Alg, tt.alg)
			}
			again, err := tokensign.LoadKeyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if k.ID == "" || again.ID != k.ID {
				t.Errorf("kid %q on first load, %q on second: want the same non-empty id", k.ID, again.ID)
			}
			if want := rfc7638Thumbprint(t, k.Signer.Public()); k.ID != want {
				t.Errorf("kid = %q, want the RFC 7638 thumbprint %q", k.ID, want)
			}
		})
	}
}

// rfc7638Thumbprint computes the thumbprint by the RFC's recipe, independently
// of go-jose: the required members only, in lexicographic order, no spaces.
func rfc7638Thumbprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	var canonical string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		e := big(k.E)
		canonical = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(e), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		x, y := raw[1:1+size], raw[1+size:]
		canonical = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Curve.Params().Name, b64(x), b64(y))
	case ed25519.PublicKey:
		canonical = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64(k))
	default:
		t.Fatalf("no thumbprint recipe for %T", pub)
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}

func big(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}

func TestLoadKeyFileRefusesWeakUnsupportedAndNonPrivateKeys(t *testing.T) {
	p224 := ecKey(t, elliptic.P224())
	rsa2048 := rsaKey(t, 2048)
	pubDER, err := x509.MarshalPKIXPublicKey(&rsa2048.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content func(t *testing.T) []byte
		want    string
	}{
		{"an RSA-1024 key is too short", func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey(t, 1024))})
		}, "1024 bits, at least 2048"},
		{"an RSA-1024 PKCS#8 key is too short too", func(t *testing.T) []byte {
			return pem.EncodeToMemory(pkcs8(t, rsaKey(t, 1024)))
		}, "1024 bits"},
		{"a P-224 key is not a JOSE curve", func(t *testing.T) []byte { return pem.EncodeToMemory(sec1(t, p224)) }, "P-224 is not supported"},
		{"a public key cannot sign", func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
		}, "needs the private key"},
		{"an encrypted key is refused", func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})
		}, "encrypted"},
		{"a legacy encrypted key is refused", func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}})
		}, "encrypted"},
		{"a corrupt key is refused", func(t *testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER")})
		}, "parse PRIVATE KEY"},
		{"a file without PEM is refused", func(t *testing.T) []byte { return []byte("hello") }, "no PEM private key"},
		{"an empty file is refused", func(t *testing.T) []byte { return nil }, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, tt.content(t), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := tokensign.LoadKeyFile(path)
			if err == nil {
				t.Fatalf("LoadKeyFile loaded a %s key; want a refusal", k.Alg)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should contain %q and the path", err, tt.want)
			}
		})
	}
	t.Run("a missing file is refused", func(t *testing.T) {
		_, err := tokensign.LoadKeyFile(filepath.Join(t.TempDir(), "absent.pem"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
}

// Keys made by openssl, as an operator would make them, load too.
func TestLoadKeyFileReadsKeysMadeByOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	tests := []struct {
		name string
		args []string
		alg  jose.SignatureAlgorithm
	}{
		{"openssl genpkey EC P-256", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}, jose.ES256},
		{"openssl ecparam -genkey (SEC 1 with parameters)", []string{"ecparam", "-name", "secp384r1", "-genkey"}, jose.ES384},
		{"openssl genpkey RSA 3072", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"}, jose.RS256},
		{"openssl genpkey Ed25519", []string{"genpkey", "-algorithm", "ED25519"}, jose.EdDSA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if out, err := exec.Command("openssl", append(tt.args, "-out", path)...).CombinedOutput(); err != nil {
				t.Fatalf("openssl: %v\n%s", err, out)
			}
			k, err := tokensign.LoadKeyFile(path)
			if err != nil {
				t.Fatalf("LoadKeyFile: %v", err)
			}
			if k.Alg != tt.alg {
				t.Errorf("alg = %s, want %s", k.Alg, tt.alg)
			}
		})
	}
}

func TestGenerateKeyMakesAnES256Key(t *testing.T) {
	k, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := k.Signer.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() || k.Alg != jose.ES256 {
		t.Fatalf("GenerateKey = %T %s, want a P-256 ECDSA key for ES256", k.Signer, k.Alg)
	}
	if k.ID != rfc7638Thumbprint(t, k.Signer.Public()) {
		t.Errorf("kid %q is not the key's thumbprint", k.ID)
	}
	other, _ := tokensign.GenerateKey()
	if other.ID == k.ID {
		t.Errorf("two generated keys share kid %q", k.ID)
	}
}

func TestWriteKeyFileRoundTripsOwnerOnlyAndNeverOverwrites(t *testing.T) {
	k, err := tokensign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ferry-signing.pem")
	if err := tokensign.WriteKeyFile(path, k); err != nil {
		t.Fatalf("WriteKeyFile: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %o, want 600", perm)
	}
	loaded, err := tokensign.LoadKeyFile(path)
	if err != nil {
		t.Fatalf("LoadKeyFile: %v", err)
	}
	if loaded.ID != k.ID || loaded.Alg != k.Alg {
		t.Errorf("loaded %s/%s, wrote %s/%s", loaded.ID, loaded.Alg, k.ID, k.Alg)
	}
	data, _ := os.ReadFile(path)
	if block, _ := pem.Decode(data); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("file is not a PKCS#8 PEM:\n%s", data)
	}

	other, _ := tokensign.GenerateKey()
	err = tokensign.WriteKeyFile(path, other)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("overwriting returned %v, want fs.ErrExist", err)
	}
	if again, _ := tokensign.LoadKeyFile(path); again == nil || again.ID != k.ID {
		t.Errorf("the existing key was replaced")
	}
}
