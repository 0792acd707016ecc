package gcpiam_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
)

// stsUniverse makes the downscope package call https://sts.example.com,
// a name the httptest certificate (*.example.com) is valid for.
const stsUniverse = "example.com"

// fakeSTS is Google's Security Token Service, server side: it answers the
// token-exchange POST that golang.org/x/oauth2/google/downscope sends.
type fakeSTS struct {
	srv    *httptest.Server
	answer func(w http.ResponseWriter, r *http.Request)

	mu    sync.Mutex
	forms []url.Values
	paths []string
}

func startSTS(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *fakeSTS {
	t.Helper()
	f := &fakeSTS{answer: answer}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.forms = append(f.forms, r.PostForm)
		f.paths = append(f.paths, r.Host+r.URL.Path)
		f.mu.Unlock()
		f.answer(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// client reaches the server whatever host is asked for, trusting its
// certificate, as DNS and a public CA would for the real STS.
func (f *fakeSTS) client() *http.Client {
	tr := f.srv.Client().Transport.(*http.Transport).Clone()
	addr := f.srv.Listener.Addr().String()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	return &http.Client{Transport: tr}
}

func (f *fakeSTS) requests() ([]url.Values, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.forms...), append([]string(nil), f.paths...)
}

func newDownscopingMinter(t *testing.T, iam *gcpfake.Server, sts *fakeSTS) *gcpiam.Minter {
	t.Helper()
	m, err := gcpiam.NewWithConfig(context.Background(), gcpiam.Config{
		ClientOptions: iam.ClientOptions(),
		Downscope:     gcpiam.Downscope{UniverseDomain: stsUniverse, HTTPClient: sts.client()},
	})
	if err != nil {
		t.Fatalf("NewWithConfig: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

var artifactsRule = gcpiam.BoundaryRule{
	AvailableResource:    "//storage.googleapis.com/projects/_/buckets/acme-artifacts",
	AvailablePermissions: []string{"inRole:roles/storage.objectViewer"},
	Condition: &gcpiam.BoundaryCondition{
		Expression: "resource.name.startsWith('projects/_/buckets/acme-artifacts/objects/acme/app/')",
		Title:      "acme/app only",
	},
}

func TestAccessBoundaryExchangesTheMintedTokenForADownscopedOne(t *testing.T) {
	iam := gcpfake.Start(t, grantFixed)
	sts := startSTS(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// STS answers with the root token's remaining life; far beyond the
		// root's expiry here, so the minter must keep the root's.
		json.NewEncoder(w).Encode(map[string]any{
			"access_token":      "ya29.downscoped",
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
			"token_type":        "Bearer",
			"expires_in":        int((100 * 365 * 24 * time.Hour).Seconds()),
		})
	})
	m := newDownscopingMinter(t, iam, sts)

	tok, err := m.GenerateAccessToken(context.Background(), gcpiam.Request{
		ServiceAccount: deploySA, Lifetime: 10 * time.Minute, AccessBoundary: []gcpiam.BoundaryRule{artifactsRule},
	})
	if err != nil {
		t.Fatalf("GenerateAccessToken: %v", err)
	}
	if tok.AccessToken != "ya29.downscoped" || !tok.ExpiresAt.Equal(fixedExpiry) || tok.ServiceAccount != deploySA {
		t.Errorf("token = {%q, %v, %q}, want the downscoped token expiring with its root at %v", tok.AccessToken, tok.ExpiresAt, tok.ServiceAccount, fixedExpiry)
	}

	forms, paths := sts.requests()
	if len(forms) != 1 {
		t.Fatalf("STS got %d requests, want 1", len(forms))
	}
	if paths[0] != "sts.example.com/v1/token" {
		t.Errorf("STS request went to %q, want sts.example.com/v1/token", paths[0])
	}
	form := forms[0]
	for field, want := range map[string]string{
		"grant_type":           "urn:ietf:params:oauth:grant-type:token-exchange",
		"subject_token_type":   "urn:ietf:params:oauth:token-type:access_token",
		"requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"subject_token":        "ya29.minted-token",
	} {
		if got := form.Get(field); got != want {
			t.Errorf("form %s = %q, want %q", field, got, want)
		}
	}
	var options struct {
		AccessBoundary struct {
			AccessBoundaryRules []struct {
				AvailableResource     string   `json:"availableResource"`
				AvailablePermissions  []string `json:"availablePermissions"`
				AvailabilityCondition *struct {
					Expression string `json:"expression"`
					Title      string `json:"title"`
				} `json:"availabilityCondition"`
			} `json:"accessBoundaryRules"`
		} `json:"accessBoundary"`
	}
	if err := json.Unmarshal([]byte(form.Get("options")), &options); err != nil {
		t.Fatalf("options %q: %v", form.Get("options"), err)
	}
	rules := options.AccessBoundary.AccessBoundaryRules
	if len(rules) != 1 {
		t.Fatalf("options has %d rules, want 1: %s", len(rules), form.Get("options"))
	}
	r := rules[0]
	if r.AvailableResource != artifactsRule.AvailableResource || !equal(r.AvailablePermissions, artifactsRule.AvailablePermissions) ||
		r.AvailabilityCondition == nil || r.AvailabilityCondition.Expression != artifactsRule.Condition.Expression || r.AvailabilityCondition.Title != artifactsRule.Condition.Title {
		t.Errorf("rule sent = %+v, want %+v", r, artifactsRule)
	}
}

func TestAccessBoundaryKeepsTheEarlierExpiryWhenSTSGrantsLess(t *testing.T) {
	iam := gcpfake.Start(t, gcpfake.Token) // root expires ten minutes from now
	sts := startSTS(t, func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"access_token": "ya29.short", "token_type": "Bearer", "expires_in": 60})
	})
	m := newDownscopingMinter(t, iam, sts)
	tok, err := m.GenerateAccessToken(context.Background(), gcpiam.Request{ServiceAccount: deploySA, Lifetime: 10 * time.Minute, AccessBoundary: []gcpiam.BoundaryRule{artifactsRule}})
	if err != nil {
		t.Fatalf("GenerateAccessToken: %v", err)
	}
	// Compared with each other, never with the clock's progress: a 60 s
	// token must come back expiring well before a 10 minute root would.
	root := time.Now().Add(10 * time.Minute)
	if !tok.ExpiresAt.Before(root.Add(-5 * time.Minute)) {
		t.Errorf("expires at %v, want STS's 60 s expiry, well before the root's %v", tok.ExpiresAt, root)
	}
}

func TestAccessBoundaryRefusalIsAnUpstreamErrorWithoutTheRootToken(t *testing.T) {
	iam := gcpfake.Start(t, grantFixed)
	sts := startSTS(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		// A careless server echoing the subject token must not leak it.
		json.NewEncoder(w).Encode(map[string]string{
			"error":             "invalid_grant",
			"error_description": "The access boundary is invalid for token " + r.PostForm.Get("subject_token"),
		})
	})
	m := newDownscopingMinter(t, iam, sts)

	tok, err := m.GenerateAccessToken(context.Background(), gcpiam.Request{ServiceAccount: deploySA, Lifetime: 10 * time.Minute, AccessBoundary: []gcpiam.BoundaryRule{artifactsRule}})
	if tok != nil {
		t.Errorf("got a token despite STS refusing")
	}
	var ue *gcpiam.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v (%T), want *gcpiam.UpstreamError", err, err)
	}
	if ue.Code != codes.InvalidArgument || ue.Reason != "invalid_grant" {
		t.Errorf("code, reason = %v, %q; want InvalidArgument, invalid_grant", ue.Code, ue.Reason)
	}
	if strings.Contains(err.Error(), "ya29.minted-token") {
		t.Errorf("error %q contains the root access token", err)
	}
	if !strings.Contains(err.Error(), "access boundary is invalid") {
		t.Errorf("error %q lost STS's explanation", err)
	}
}

func TestAccessBoundaryGivesUpCleanlyWhenSTSIsSlowerThanTheDeadline(t *testing.T) {
	iam := gcpfake.Start(t, grantFixed)
	sts := startSTS(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; the client hangs up
	})
	m := newDownscopingMinter(t, iam, sts)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := m.GenerateAccessToken(ctx, gcpiam.Request{ServiceAccount: deploySA, Lifetime: 10 * time.Minute, AccessBoundary: []gcpiam.BoundaryRule{artifactsRule}})
	var ue *gcpiam.UpstreamError
	if !errors.As(err, &ue) || ue.Code != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a DeadlineExceeded UpstreamError wrapping context.DeadlineExceeded", err)
	}
	if !strings.Contains(ue.Op, "downscope") {
		t.Errorf("op = %q, want it to name the downscoping step", ue.Op)
	}
}
