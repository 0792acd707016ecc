package exchange_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/devissuer"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/policystore"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/replay"
)

// memoryAWS answers AssumeRole in memory. It exists for the benchmark only,
// so the figure is Ferry's own cost (verify, authorize, replay, audit) and
// not STS's latency.
type memoryAWS struct{}

func (memoryAWS) AssumeRole(_ context.Context, req awssts.Request) (*awssts.Credentials, error) {
	return &awssts.Credentials{AccessKeyID: "ASIABENCH", SecretAccessKey: "s", SessionToken: "t",
		Expiration: time.Now().Add(req.Duration), RoleARN: req.RoleARN}, nil
}

func benchService(b *testing.B, auditOpts ...audit.Option) (*exchange.Service, *devissuer.Issuer) {
	b.Helper()
	gh, err := devissuer.Start(devissuer.Options{Flavor: devissuer.GitHub})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gh.Close() })
	dir := b.TempDir()
	for name, body := range testPolicies {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	pool, err := identity.NewPool([]identity.IssuerConfig{
		{Name: "github", IssuerURL: gh.URL(), Audiences: []string{"ferry"}},
	}, identity.Options{Logger: quiet, Claims: registry.Platforms()})
	if err != nil {
		b.Fatal(err)
	}
	if err := pool.Warm(context.Background()); err != nil {
		b.Fatal(err)
	}
	store, err := policystore.Open(dir, loadOptions, nil)
	if err != nil {
		b.Fatal(err)
	}
	log, err := audit.Open(filepath.Join(dir, "audit.log"), auditOpts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { log.Close() })
	key, err := tokensign.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	signer, err := tokensign.NewSigner("https://ferry.example.com", key)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := exchange.New(exchange.Deps{
		Verifier: pool, Policies: store, Replay: replay.NewMemory(), Audit: log,
		Kinds: registry.Kinds(), Platforms: registry.Platforms(), Logger: quiet,
		Minters: map[string]grant.Minter{awssts.KindName: awssts.GrantMinter{STS: memoryAWS{}}, tokensign.KindName: signer},
	})
	if err != nil {
		b.Fatal(err)
	}
	return svc, gh
}

// tokens signs n single-use tokens before the clock starts: signing is the
// CI platform's cost, not Ferry's.
func tokens(b *testing.B, gh *devissuer.Issuer, sample string, n int) []string {
	b.Helper()
	out := make([]string, n)
	for i := range out {
		c, err := devissuer.SampleClaims(sample)
		if err != nil {
			b.Fatal(err)
		}
		c["jti"] = fmt.Sprintf("bench-%d", i)
		if out[i], err = gh.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

func benchExchange(b *testing.B, policy, sample string) {
	// The audit log's fsync is the disk's cost, not Ferry's: shown apart.
	for _, v := range []struct {
		name string
		opts []audit.Option
	}{{"audit=fsync", nil}, {"audit=nosync", []audit.Option{audit.NoSync()}}} {
		b.Run(v.name, func(b *testing.B) {
			svc, gh := benchService(b, v.opts...)
			toks := tokens(b, gh, sample, b.N)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := svc.Exchange(ctx, exchange.Request{Policy: policy, Token: toks[i]}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExchangeAWS is a whole exchange, verify + authorize + replay +
// render + audit, with STS answered in memory.
func BenchmarkExchangeAWS(b *testing.B) {
	benchExchange(b, "deploy-prod", "github-environment-production")
}

// BenchmarkExchangeToken is a whole token-grant exchange, including the
// ES256 signature and the audit write.
func BenchmarkExchangeToken(b *testing.B) {
	benchExchange(b, "artifacts", "github-push-main")
}

// BenchmarkExchangeTokenParallel is the token grant with every core busy
// and the audit log not fsynced: its ns/op is the CPU ceiling of one
// broker (1s / ns/op exchanges a second), the figure to size replicas by.
func BenchmarkExchangeTokenParallel(b *testing.B) {
	svc, gh := benchService(b, audit.NoSync())
	toks := tokens(b, gh, "github-push-main", b.N)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if _, err := svc.Exchange(ctx, exchange.Request{Policy: "artifacts", Token: toks[i]}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchHTTP drives the real handler over loopback HTTP from parallel
// clients, the way a broker meets its callers, with the production
// logger's JSON encoding (to nowhere) and metrics on.
func benchHTTP(b *testing.B, policy, sample string, edit map[string]any, fresh bool, want int) {
	svc, gh := benchService(b)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv := httptest.NewServer(exchange.NewHandler(svc, exchange.HTTPOptions{Logger: logger, Metrics: exchange.NewMetrics(func(string) bool { return true })}))
	b.Cleanup(srv.Close)
	n := 64
	if fresh {
		n = b.N + 64
	}
	toks := make([]string, n)
	for i := range toks {
		c, err := devissuer.SampleClaims(sample)
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range edit {
			c[k] = v
		}
		c["jti"] = fmt.Sprintf("http-%d", i)
		if toks[i], err = gh.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1) - 1)
			body := fmt.Sprintf(`{"policy":%q,"token":%q}`, policy, toks[i%len(toks)])
			resp, err := client.Post(srv.URL+"/v1/exchange", "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Errorf("status %d, want %d", resp.StatusCode, want)
				return
			}
		}
	})
}

// BenchmarkHTTPDeny is a refused exchange through the HTTP API: verify,
// decide, audit (fsync, shared by group commit), nothing minted.
func BenchmarkHTTPDeny(b *testing.B) {
	benchHTTP(b, "deploy-prod", "github-environment-production", map[string]any{"ref": "refs/heads/dev"}, false, http.StatusForbidden)
}

// BenchmarkHTTPToken is an allowed token-grant exchange through the HTTP
// API.
func BenchmarkHTTPToken(b *testing.B) {
	benchHTTP(b, "artifacts", "github-push-main", nil, true, http.StatusOK)
}
