// Package tokensign issues Ferry's own signed JWTs (grant type token) and
// publishes the keys that verify them, as an OpenID Connect discovery
// document and a JWKS, so an internal service verifies Ferry tokens with any
// OIDC library exactly as it would verify GitHub's.
//
// Keys are asymmetric only: ECDSA (ES256/384/512, the default, cheap to
// sign), RSA of at least 2048 bits (RS256) and Ed25519 (EdDSA). A key's id
// is its RFC 7638 thumbprint, so it is stable across restarts and replicas
// without being configured.
package tokensign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// MinRSABits is the smallest RSA key accepted; shorter keys are factorable
// with resources well within reach of a motivated attacker.
const MinRSABits = 2048

// Key is one signing key.
type Key struct {
	// ID is the key id (kid): the RFC 7638 JWK thumbprint, base64url SHA-256.
	ID string
	// Signer is the private key: *ecdsa.PrivateKey, *rsa.PrivateKey or
	// ed25519.PrivateKey.
	Signer crypto.Signer
	// Alg is the JWS algorithm the key signs with.
	Alg jose.SignatureAlgorithm
}

// NewKey wraps a private key, choosing its algorithm and computing its id.
func NewKey(signer crypto.Signer) (*Key, error) {
	var alg jose.SignatureAlgorithm
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("RSA key is %d bits, at least %d are required", bits, MinRSABits)
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		case elliptic.P521():
			alg = jose.ES512
		default:
			return nil, fmt.Errorf("ECDSA curve %s is not supported: use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		// go-jose signs only with these concrete types; a KMS or HSM
		// signer would need a jose.OpaqueSigner adapter.
		return nil, fmt.Errorf("key type %T is not supported: use ECDSA, RSA or Ed25519", signer)
	}
	thumb, err := (&jose.JSONWebKey{Key: signer.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("compute key thumbprint: %w", err)
	}
	return &Key{ID: base64.RawURLEncoding.EncodeToString(thumb), Signer: signer, Alg: alg}, nil
}

// GenerateKey makes a fresh ECDSA P-256 key (ES256): a signature costs tens
// of microseconds, against about a millisecond for RSA-2048.
func GenerateKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return NewKey(priv)
}

// LoadKeyFile reads a PEM private key: PKCS#8 ("PRIVATE KEY") of any
// supported type, PKCS#1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY",
// with or without the "EC PARAMETERS" block openssl writes before it).
// Encrypted keys are refused: Ferry has nowhere to keep a passphrase that is
// safer than the file's permissions.
func LoadKeyFile(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	k, err := parseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", path, err)
	}
	return k, nil
}

func parseKeyPEM(data []byte) (*Key, error) {
	rest := data
	for {
		var err error
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(data)) == 0 {
				return nil, errors.New("file is empty")
			}
			return nil, errors.New("no PEM private key found")
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("key is encrypted; store it unencrypted with mode 0600 or in a secret volume")
		}
		var parsed any
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			parsed, err = x509.ParseECPrivateKey(block.Bytes)
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			return nil, fmt.Errorf("found a %s, but signing needs the private key", block.Type)
		default:
			return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		signer, ok := parsed.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key type %T cannot sign", parsed)
		}
		return NewKey(signer)
	}
}

// WriteKeyFile writes k's private key as PKCS#8 PEM, readable by the owner
// only. It never replaces an existing file: overwriting a signing key would
// silently invalidate every token it issued.
func WriteKeyFile(path string, k *Key) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return fmt.Errorf("write signing key %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write signing key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write signing key %s: %w", path, err)
	}
	return nil
}
