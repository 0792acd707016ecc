package tokensign_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
)

// listShared is a revocation list in a map: the seam's contract, without
// the replay store the exchange puts behind it (tested in exchange).
type listShared struct {
	mu      sync.Mutex
	revoked map[string]time.Time
	err     error
}

func newListShared() *listShared { return &listShared{revoked: map[string]time.Time{}} }

func (l *listShared) Revoke(_ context.Context, id string, until time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.revoked[id] = until
	return nil
}

func (l *listShared) Revoked(_ context.Context, id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.revoked[id]
	return ok, l.err
}

func (l *listShared) Lock(context.Context, string, time.Duration) (func(), error) {
	return func() {}, nil
}

func mintToken(t *testing.T, s *tokensign.Signer, now time.Time, lifetime time.Duration) *grant.Credential {
	t.Helper()
	spec := granttest.MustParse(t, tokensign.Kind{}, "audience: https://svc.example\nclaims: [repository]\n")
	c := granttest.Claims(t, "github-push-main", nil)
	cred, err := s.Mint(context.Background(), grant.Request{Spec: spec, Lifetime: lifetime, Claims: c, Now: now,
		Job: platform.Job{Subject: "repo:acme/app:ref:refs/heads/main"}})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func TestReleasedTokenIntrospectsInactive(t *testing.T) {
	s := mustSigner(t, "https://ferry.example.com", mustKey(t))
	now := time.Now().Truncate(time.Second)
	cred := mintToken(t, s, now, 5*time.Minute)
	if cred.Release != cred.ID || cred.ID == "" {
		t.Fatalf("Release state = %q, want the jti %q", cred.Release, cred.ID)
	}
	shared := newListShared()
	ctx := context.Background()
	tok := cred.Bearer.Token

	claims, err := s.Introspect(ctx, tok, shared, now.Add(time.Minute))
	if err != nil || claims == nil {
		t.Fatalf("Introspect of a live token = %v, %v", claims, err)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "repository"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("introspection lacks %q: %v", k, claims)
		}
	}
	if claims["jti"] != cred.ID || claims["repository"] != "acme/app" || claims["iss"] != "https://ferry.example.com" {
		t.Errorf("claims = %v", claims)
	}

	r, err := s.Release(ctx, grant.ReleaseRequest{State: cred.Release, ExpiresAt: cred.ExpiresAt, Now: now.Add(time.Minute), Shared: shared})
	if err != nil || !r.Revoked || !strings.Contains(r.Detail, cred.ID) {
		t.Fatalf("Release = %+v, %v", r, err)
	}
	if until := shared.revoked[cred.ID]; !until.Equal(cred.ExpiresAt) {
		t.Errorf("revoked until %v, want the token's exp %v", until, cred.ExpiresAt)
	}
	if claims, err := s.Introspect(ctx, tok, shared, now.Add(time.Minute)); claims != nil || err != nil {
		t.Errorf("Introspect after release = %v, %v; want inactive", claims, err)
	}
}

func TestIntrospectAnswersInactiveForWhatIsNotALiveFerryToken(t *testing.T) {
	key, old := mustKey(t), mustKey(t)
	s := mustSigner(t, "https://ferry.example.com", key, old)
	now := time.Now().Truncate(time.Second)
	live := mintToken(t, s, now, 5*time.Minute).Bearer.Token
	otherSigner := mustSigner(t, "https://ferry.example.com", mustKey(t))
	sameKeyOtherIssuer := mustSigner(t, "https://other.example.com", key)
	previousKey := mustSigner(t, "https://ferry.example.com", old)

	untyped := func() string {
		// Signed with the active key, but no typ: JWT (as an audit
		// checkpoint is typed otherwise).
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: key.Alg, Key: jose.JSONWebKey{Key: key.Signer, KeyID: key.ID}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "https://ferry.example.com", ID: "x", Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}()

	tests := []struct {
		name  string
		token string
		at    time.Time
		want  bool
	}{
		{"a live token", live, now.Add(time.Minute), true},
		{"a token signed by a previous key", mintToken(t, previousKey, now, 5*time.Minute).Bearer.Token, now, true},
		{"an expired token", live, now.Add(5 * time.Minute), false},
		{"a token not yet valid", live, now.Add(-time.Minute), false},
		{"another broker's token", mintToken(t, otherSigner, now, 5*time.Minute).Bearer.Token, now, false},
		{"the same key under another issuer", mintToken(t, sameKeyOtherIssuer, now, 5*time.Minute).Bearer.Token, now, false},
		{"a JWS without typ JWT", untyped, now, false},
		{"a token with its signature cut", live[:strings.LastIndex(live, ".")+1], now, false},
		{"a token with a byte of the payload changed", flipPayload(live), now, false},
		{"not a JWT at all", "ghs_notajwt", now, false},
		{"empty", "", now, false},
		{"a huge token", strings.Repeat("a", 20<<10), now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims, err := s.Introspect(context.Background(), tt.token, newListShared(), tt.at)
			if err != nil {
				t.Fatalf("Introspect: %v", err)
			}
			if got := claims != nil; got != tt.want {
				t.Errorf("active = %v, want %v (%v)", got, tt.want, claims)
			}
		})
	}
}

func flipPayload(tok string) string {
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	if p[5] == 'A' {
		p[5] = 'B'
	} else {
		p[5] = 'A'
	}
	parts[1] = string(p)
	return strings.Join(parts, ".")
}

func TestIntrospectAndReleaseFailClosedWithoutTheList(t *testing.T) {
	s := mustSigner(t, "https://ferry.example.com", mustKey(t))
	now := time.Now().Truncate(time.Second)
	cred := mintToken(t, s, now, 5*time.Minute)
	broken := newListShared()
	broken.err = errors.New("redis: connection refused")
	if claims, err := s.Introspect(context.Background(), cred.Bearer.Token, broken, now); claims != nil || err == nil {
		t.Errorf("Introspect with the list unreachable = %v, %v; want no claims and an error", claims, err)
	}
	_, err := s.Release(context.Background(), grant.ReleaseRequest{State: cred.Release, ExpiresAt: cred.ExpiresAt, Now: now, Shared: broken})
	var ue *grant.UnavailableError
	if !errors.As(err, &ue) {
		t.Errorf("Release with the list unreachable: err = %v, want a *grant.UnavailableError", err)
	}
	// An expired token needs no list.
	r, err := s.Release(context.Background(), grant.ReleaseRequest{State: cred.Release, ExpiresAt: cred.ExpiresAt, Now: cred.ExpiresAt, Shared: broken})
	if err != nil || r.Revoked {
		t.Errorf("Release of an expired token = %+v, %v; want not revoked, no error", r, err)
	}
}
