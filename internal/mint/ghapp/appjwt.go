package ghapp

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MinRSABits is the smallest App key accepted. GitHub generates 2048-bit
// keys.
const MinRSABits = 2048

// maxKeyFile bounds the key file read: a PEM RSA key is a few KiB.
const maxKeyFile = 64 << 10

// The App JWT's validity: GitHub refuses an exp more than 10 minutes ahead
// of its clock, and an iat in its future, so iat is set back and exp kept
// short of the limit, for clocks that drift.
const (
	jwtBackdate = 60 * time.Second
	jwtLifetime = 9 * time.Minute
)

// LoadKeyFile reads the App's RSA private key: the PEM GitHub hands out
// (PKCS #1, "RSA PRIVATE KEY") or PKCS #8 ("PRIVATE KEY"). Errors say what
// is wrong without showing any of the file.
func LoadKeyFile(path string) (*rsa.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s is over %d KiB: not a PEM private key", path, maxKeyFile>>10)
	}
	key, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParseKey reads a PEM RSA private key.
func ParseKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block: want the private key GitHub generated for the App (-----BEGIN RSA PRIVATE KEY-----)")
	}
	if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the key is encrypted: give the broker the unencrypted PEM, in a file only it can read")
	}
	var key *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("the RSA PRIVATE KEY block does not parse as a PKCS #1 key")
		}
		key = k
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("the PRIVATE KEY block does not parse as a PKCS #8 key")
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("the key is %T; GitHub Apps sign with RSA keys", k)
		}
		key = rk
	default:
		return nil, fmt.Errorf("a PEM block of type %q is not a private key: want RSA PRIVATE KEY", block.Type)
	}
	if bits := key.N.BitLen(); bits < MinRSABits {
		return nil, fmt.Errorf("the RSA key is %d bits; at least %d are required", bits, MinRSABits)
	}
	return key, nil
}

// appSigner signs the App's JWTs.
type appSigner struct {
	issuer string
	signer jose.Signer
}

func newAppSigner(appID int64, key *rsa.PrivateKey) (*appSigner, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("the App key cannot sign: %w", err)
	}
	return &appSigner{issuer: strconv.FormatInt(appID, 10), signer: s}, nil
}

// sign makes the JWT that authenticates the App itself (not one of its
// installations) to GitHub, valid from a minute before now for nine
// minutes.
func (a *appSigner) sign(now time.Time) (string, error) {
	return jwt.Signed(a.signer).Claims(jwt.Claims{
		Issuer:   a.issuer,
		IssuedAt: jwt.NewNumericDate(now.Add(-jwtBackdate)),
		Expiry:   jwt.NewNumericDate(now.Add(jwtLifetime)),
	}).Serialize()
}
