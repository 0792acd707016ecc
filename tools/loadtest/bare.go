package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/claims"
)

// bareServer is the reference: it reads the same request body, decodes it
// and checks the same RS256 signature with the issuer's key, and answers.
// It checks no claim, keeps no state and writes no log.
func bareServer(key crypto.PublicKey) http.Handler { return reference(key, nil, nil) }

// durableBareServer is the bare server held to Ferry's durability
// contract: before it answers it appends one audit record, shaped like
// the record of a refused exchange, through Ferry's own audit log (hash
// chain, group commit, fsync). It still checks no claim and decides
// nothing, so no broker that keeps the contract can answer for less on
// this machine: its ratio to the bare server is the ceiling the fsync
// sets. With a signer it also signs a token for each request before it
// records it, the least a token grant does besides. It serves the log's
// commit counters on /metrics, as a broker does.
func durableBareServer(key crypto.PublicKey, log *audit.Log, signer jose.Signer) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(log.Collector())
	mux := http.NewServeMux()
	mux.Handle("/v1/exchange", reference(key, log, signer))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func reference(key crypto.PublicKey, log *audit.Log, signer jose.Signer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		var req struct {
			Policy string `json:"policy"`
			Token  string `json:"token"`
		}
		if err != nil || json.Unmarshal(body, &req) != nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		jws, err := jose.ParseSignedCompact(req.Token, []jose.SignatureAlgorithm{jose.RS256})
		if err == nil {
			_, err = jws.Verify(key)
		}
		var token string
		if signer != nil && err == nil {
			if token, err = signToken(signer); err != nil {
				http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
				return
			}
		}
		if log != nil {
			if _, werr := log.Write(r.Context(), referenceRecord(req.Policy, r.RemoteAddr)); werr != nil {
				http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_token"}`))
			return
		}
		if token != "" {
			_, _ = fmt.Fprintf(w, `{"ok":true,"token":%q}`, token)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
}

// signToken signs claims shaped like a Ferry token's (fixed but for the
// times), as compact JWS.
func signToken(signer jose.Signer) (string, error) {
	now := time.Now().Unix()
	payload := fmt.Appendf(nil, `{"aud":"https://artifacts.internal.example","exp":%d,"iat":%d,"iss":"https://ferry.loadtest.example",`+
		`"jti":"01M8RQQVBPFEG3A2K22023ZQ2Z","nbf":%d,"policy":"artifacts","ref":"refs/heads/main","repository":"acme/app",`+
		`"sub":"repo:acme/app:ref:refs/heads/main"}`, now+300, now, now)
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// newReferenceSigner is an ES256 signer with a fresh P-256 key, as
// `ferry keygen` makes them; it returns the key too, to check with.
func newReferenceSigner() (jose.Signer, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	return signer, key, err
}

// referenceRecord is what a broker records for the deny scenario's
// refusal, field for field and about byte for byte (some 730 bytes a
// line), with fixed claims: the reference reads none.
func referenceRecord(policy, remoteAddr string) audit.Record {
	ip, _, _ := net.SplitHostPort(remoteAddr)
	return audit.Record{
		RequestID: "01M8RQQVBPFEG3A2K22023ZQ2Z",
		Decision:  audit.Deny,
		Error:     "access_denied",
		Reason:    `claim "ref" = "refs/heads/dev" does not match policy "deploy" (want "refs/heads/main")`,
		Rule:      "match.ref",
		Policy:    policy,
		Issuer:    "github",
		Subject:   "repo:acme/app:ref:refs/heads/main",
		Claims: []claims.Pair{
			{Name: "repository", Value: "acme/app"}, {Name: "repository_id", Value: "892345671"},
			{Name: "ref", Value: "refs/heads/dev"}, {Name: "event_name", Value: "push"},
			{Name: "run_id", Value: "11223344556"}, {Name: "actor", Value: "octo-dev"},
			{Name: "job_workflow_ref", Value: "acme/app/.github/workflows/deploy.yml@refs/heads/main"},
		},
		ClientIP: ip,
	}
}
