package exchange_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"

	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
)

type (
	credentialspbRequest  = credentialspb.GenerateAccessTokenRequest
	credentialspbResponse = credentialspb.GenerateAccessTokenResponse
)

func sampleClaims(name string) (map[string]any, error) {
	c, err := devissuer.SampleClaims(name)
	if err != nil {
		return nil, err
	}
	now := time.Now().Unix()
	c["iat"], c["nbf"], c["exp"] = now, now-600, now+300
	c["jti"] = "attack-" + name + "-" + time.Now().Format("150405.000000000")
	return c, nil
}

func withIss(c map[string]any, iss string) map[string]any {
	c["iss"] = iss
	return c
}

func encodeSegment(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// unsignedToken is the classic alg=none forgery.
func unsignedToken(t *testing.T, iss string, c map[string]any) string {
	t.Helper()
	c["iss"] = iss
	return encodeSegment(t, map[string]string{"alg": "none", "typ": "JWT"}) + "." + encodeSegment(t, c) + "."
}

// hmacWithPublicKey is the algorithm-confusion forgery: HS256 keyed with
// the issuer's public key, which a careless verifier would accept.
func hmacWithPublicKey(t *testing.T, is *devissuer.Issuer, c map[string]any) string {
	t.Helper()
	c["iss"] = is.URL()
	der, err := x509.MarshalPKIXPublicKey(&is.Key().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	signing := encodeSegment(t, map[string]string{"alg": "HS256", "typ": "JWT", "kid": is.KeyID()}) + "." + encodeSegment(t, c)
	mac := hmac.New(sha256.New, der)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// jwtClaims reads a JWT's payload without verifying it: for asserting on
// tokens the broker itself minted.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s", tok)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// flakyAWS is an AWS minter that refuses as STS does until ok is set. It
// stands in for STS only where a test needs STS to fail on demand and then
// recover; the real STS path runs against moto_server.
type flakyAWS struct {
	ok   bool
	last awssts.Request
}

func (f *flakyAWS) AssumeRole(_ context.Context, req awssts.Request) (*awssts.Credentials, error) {
	f.last = req
	if !f.ok {
		return nil, &awssts.UpstreamError{Op: "AssumeRole", Code: "AccessDenied", Message: "User is not authorized to perform sts:AssumeRole"}
	}
	return &awssts.Credentials{
		AccessKeyID: "ASIAFLAKYEXAMPLE0001", SecretAccessKey: "secret-secret-secret-secret", SessionToken: "session-session-session-session",
		Expiration: time.Now().Add(req.Duration), RoleARN: req.RoleARN,
	}, nil
}
