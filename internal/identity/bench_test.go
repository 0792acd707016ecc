package identity

import (
	"context"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/claims"
)

// The benchmarks compare Pool.Verify with the least any verifier must do
// for the same token: parse the compact JWS and check its RS256 signature
// with the issuer's key. docs/performance.md ("Token verification") records
// the figures and how to reproduce them.

// benchToken is a GitHub-shaped RS256 token from a dev issuer, verified
// once so the issuer's keys are cached.
func benchToken(b *testing.B) (*env, string) {
	b.Helper()
	e := newEnv(b, Options{})
	raw := sign(b, e.github, sample(b, "github-push-main"))
	if _, err := e.pool.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	return e, raw
}

// bareVerify is the floor: one parse, one signature check, no claims.
func bareVerify(raw string, key any) error {
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return err
	}
	_, err = jws.Verify(key)
	return err
}

// BenchmarkVerify measures verifying a valid GitHub token with its
// issuer's keys cached: the per-request cost of the broker's first step.
func BenchmarkVerify(b *testing.B) {
	e, raw := benchToken(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.pool.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareJWSVerify is the same token through bareVerify.
func BenchmarkBareJWSVerify(b *testing.B) {
	e, raw := benchToken(b)
	key := &e.github.Key().PublicKey
	b.ReportAllocs()
	for b.Loop() {
		if err := bareVerify(raw, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyVsBare interleaves Pool.Verify and bareVerify on the same
// token in one loop and reports both per-op times and their ratio, so the
// ratio is measured under the same load whatever else the machine does.
func BenchmarkVerifyVsBare(b *testing.B) {
	e, raw := benchToken(b)
	ctx := context.Background()
	key := &e.github.Key().PublicKey
	var pool, bare time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		if _, err := e.pool.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := bareVerify(raw, key); err != nil {
			b.Fatal(err)
		}
		bare += time.Since(t1)
		pool += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(pool.Nanoseconds())/float64(n), "verify-ns/op")
	b.ReportMetric(float64(bare.Nanoseconds())/float64(n), "bare-ns/op")
	b.ReportMetric(float64(pool)/float64(bare), "ratio")
}

// BenchmarkClaimsParse is claims.Parse alone on the same token's payload:
// how much of Verify's cost above the bare check is decoding the claims.
func BenchmarkClaimsParse(b *testing.B) {
	_, raw := benchToken(b)
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil {
		b.Fatal(err)
	}
	payload := jws.UnsafePayloadWithoutVerification()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := claims.Parse(payload); err != nil {
			b.Fatal(err)
		}
	}
}
