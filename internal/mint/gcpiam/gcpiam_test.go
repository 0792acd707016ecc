package gcpiam_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
)

const (
	deploySA = "deploy@acme-prod.iam.gserviceaccount.com"
	hopSA    = "hop@acme-shared.iam.gserviceaccount.com"
)

var fixedExpiry = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func grantFixed(_ context.Context, req *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
	return &credentialspb.GenerateAccessTokenResponse{AccessToken: "ya29.minted-token", ExpireTime: timestamppb.New(fixedExpiry)}, nil
}

func newMinter(t *testing.T, srv *gcpfake.Server) *gcpiam.Minter {
	t.Helper()
	m, err := gcpiam.New(context.Background(), srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestGenerateAccessTokenSendsTheGrantAndReturnsGooglesAnswer(t *testing.T) {
	tests := []struct {
		name          string
		req           gcpiam.Request
		wantScopes    []string
		wantDelegates []string
	}{
		{
			name:       "a grant without scopes asks for cloud-platform",
			req:        gcpiam.Request{ServiceAccount: deploySA, Lifetime: 10 * time.Minute},
			wantScopes: []string{"https://www.googleapis.com/auth/cloud-platform"},
		},
		{
			name: "scopes and delegates are sent as given, delegates as resource names",
			req: gcpiam.Request{
				ServiceAccount: deploySA,
				Scopes:         []string{"https://www.googleapis.com/auth/devstorage.read_only", "https://www.googleapis.com/auth/userinfo.email"},
				Delegates:      []string{hopSA},
				Lifetime:       time.Hour,
			},
			wantScopes:    []string{"https://www.googleapis.com/auth/devstorage.read_only", "https://www.googleapis.com/auth/userinfo.email"},
			wantDelegates: []string{"projects/-/serviceAccounts/" + hopSA},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gcpfake.Start(t, grantFixed)
			m := newMinter(t, srv)

			tok, err := m.GenerateAccessToken(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("GenerateAccessToken: %v", err)
			}
			if tok.AccessToken != "ya29.minted-token" || !tok.ExpiresAt.Equal(fixedExpiry) || tok.ServiceAccount != deploySA {
				t.Errorf("token = {%q, %v, %q}, want {ya29.minted-token, %v, %s}", tok.AccessToken, tok.ExpiresAt, tok.ServiceAccount, fixedExpiry, deploySA)
			}

			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			if want := "projects/-/serviceAccounts/" + deploySA; got.GetName() != want {
				t.Errorf("name = %q, want %q", got.GetName(), want)
			}
			if !equal(got.GetScope(), tt.wantScopes) {
				t.Errorf("scope = %q, want %q", got.GetScope(), tt.wantScopes)
			}
			if !equal(got.GetDelegates(), tt.wantDelegates) {
				t.Errorf("delegates = %q, want %q", got.GetDelegates(), tt.wantDelegates)
			}
			if got.GetLifetime().AsDuration() != tt.req.Lifetime {
				t.Errorf("lifetime = %v, want %v", got.GetLifetime().AsDuration(), tt.req.Lifetime)
			}
		})
	}
}

func TestGenerateAccessTokenReportsGoogleRefusalsAsUpstreamErrors(t *testing.T) {
	tests := []struct {
		name       string
		answer     error
		wantCode   codes.Code
		wantReason string
		wantText   string
	}{
		{
			name:       "a broker without token creator on the account gets PermissionDenied with Google's reason",
			answer:     gcpfake.Error(codes.PermissionDenied, "IAM_PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."),
			wantCode:   codes.PermissionDenied,
			wantReason: "IAM_PERMISSION_DENIED",
			wantText:   "PermissionDenied (IAM_PERMISSION_DENIED): Permission 'iam.serviceAccounts.getAccessToken' denied",
		},
		{
			name:     "a deleted service account is NotFound",
			answer:   gcpfake.Error(codes.NotFound, "", "Service account projects/-/serviceAccounts/"+deploySA+" not found."),
			wantCode: codes.NotFound,
			wantText: "NotFound: Service account",
		},
		{
			name:       "an exhausted quota is ResourceExhausted",
			answer:     gcpfake.Error(codes.ResourceExhausted, "RATE_LIMIT_EXCEEDED", "Quota exceeded for quota metric 'Generate credentials requests'."),
			wantCode:   codes.ResourceExhausted,
			wantReason: "RATE_LIMIT_EXCEEDED",
			wantText:   "ResourceExhausted (RATE_LIMIT_EXCEEDED): Quota exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gcpfake.Start(t, func(context.Context, *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
				return nil, tt.answer
			})
			m := newMinter(t, srv)

			tok, err := m.GenerateAccessToken(context.Background(), gcpiam.Request{ServiceAccount: deploySA, Lifetime: 5 * time.Minute})
			if tok != nil {
				t.Errorf("got a token despite the refusal")
			}
			var ue *gcpiam.UpstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v (%T), want *gcpiam.UpstreamError", err, err)
			}
			if ue.Code != tt.wantCode || ue.Reason != tt.wantReason {
				t.Errorf("code, reason = %v, %q; want %v, %q", ue.Code, ue.Reason, tt.wantCode, tt.wantReason)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), deploySA) {
				t.Errorf("error %q should contain %q and the service account", err, tt.wantText)
			}
			if n := len(srv.Requests()); n != 1 {
				t.Errorf("server got %d requests, want 1 (a refusal is not retried)", n)
			}
		})
	}
}

func TestGenerateAccessTokenGivesUpCleanlyWhenGoogleIsSlowerThanTheDeadline(t *testing.T) {
	srv := gcpfake.Start(t, func(ctx context.Context, _ *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
		<-ctx.Done() // never answers; the client's deadline ends the call
		return nil, ctx.Err()
	})
	m := newMinter(t, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	tok, err := m.GenerateAccessToken(ctx, gcpiam.Request{ServiceAccount: deploySA, Lifetime: 5 * time.Minute})
	if tok != nil {
		t.Errorf("got a token from a server that never answered")
	}
	var ue *gcpiam.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v (%T), want *gcpiam.UpstreamError", err, err)
	}
	if ue.Code != codes.DeadlineExceeded {
		t.Errorf("code = %v, want DeadlineExceeded", ue.Code)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(err, context.DeadlineExceeded) = false for %v", err)
	}
	if !strings.Contains(err.Error(), "no answer from Google before the request deadline") {
		t.Errorf("error %q does not say the deadline passed", err)
	}
}

func TestGenerateAccessTokenReportsACanceledRequestAsCanceled(t *testing.T) {
	started := make(chan struct{})
	srv := gcpfake.Start(t, func(ctx context.Context, _ *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	m := newMinter(t, srv)

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := m.GenerateAccessToken(ctx, gcpiam.Request{ServiceAccount: deploySA, Lifetime: 5 * time.Minute})
	var ue *gcpiam.UpstreamError
	if !errors.As(err, &ue) || ue.Code != codes.Canceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want an UpstreamError with code Canceled wrapping context.Canceled", err)
	}
}

func TestGenerateAccessTokenRetriesWhenGoogleIsBrieflyUnavailable(t *testing.T) {
	var calls atomic.Int32
	srv := gcpfake.Start(t, func(ctx context.Context, req *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
		if calls.Add(1) == 1 {
			return nil, gcpfake.Error(codes.Unavailable, "", "backend restarting")
		}
		return grantFixed(ctx, req)
	})
	m := newMinter(t, srv)

	tok, err := m.GenerateAccessToken(context.Background(), gcpiam.Request{ServiceAccount: deploySA, Lifetime: 5 * time.Minute})
	if err != nil {
		t.Fatalf("GenerateAccessToken: %v", err)
	}
	if tok.AccessToken != "ya29.minted-token" {
		t.Errorf("access token = %q, want the one from the second attempt", tok.AccessToken)
	}
	if n := len(srv.Requests()); n != 2 {
		t.Errorf("server got %d requests, want 2", n)
	}
}

func TestGenerateAccessTokenRefusesAnAnswerThatIsNotAUsableToken(t *testing.T) {
	tests := []struct {
		name   string
		answer *credentialspb.GenerateAccessTokenResponse
	}{
		{"an empty access token is refused", &credentialspb.GenerateAccessTokenResponse{ExpireTime: timestamppb.New(fixedExpiry)}},
		{"a token without an expiry is refused", &credentialspb.GenerateAccessTokenResponse{AccessToken: "ya29.timeless"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gcpfake.Start(t, func(context.Context, *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
				return tt.answer, nil
			})
			m := newMinter(t, srv)
			tok, err := m.GenerateAccessToken(context.Background(), gcpiam.Request{ServiceAccount: deploySA, Lifetime: 5 * time.Minute})
			var ue *gcpiam.UpstreamError
			if tok != nil || !errors.As(err, &ue) || ue.Code != codes.Internal {
				t.Fatalf("GenerateAccessToken = %v, %v; want no token and an Internal UpstreamError", tok, err)
			}
			if strings.Contains(err.Error(), "ya29.") {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestGenerateAccessTokenRefusesABadRequestWithoutCallingGoogle(t *testing.T) {
	tests := []struct {
		name      string
		req       gcpiam.Request
		wantField string
	}{
		{"an empty service account", gcpiam.Request{Lifetime: 5 * time.Minute}, "service_account"},
		{"a service account that would change the resource path", gcpiam.Request{ServiceAccount: "a/../b@p.iam.gserviceaccount.com", Lifetime: 5 * time.Minute}, "service_account"},
		{"a delegate that is not a service account", gcpiam.Request{ServiceAccount: deploySA, Delegates: []string{"alice@example.com"}, Lifetime: 5 * time.Minute}, "delegates"},
		{"a scope with a space", gcpiam.Request{ServiceAccount: deploySA, Scopes: []string{"a b"}, Lifetime: 5 * time.Minute}, "scopes"},
		{"an empty scope", gcpiam.Request{ServiceAccount: deploySA, Scopes: []string{""}, Lifetime: 5 * time.Minute}, "scopes"},
		{"no lifetime", gcpiam.Request{ServiceAccount: deploySA}, "lifetime"},
		{"a lifetime under a minute", gcpiam.Request{ServiceAccount: deploySA, Lifetime: 59 * time.Second}, "lifetime"},
		{"a lifetime over an hour", gcpiam.Request{ServiceAccount: deploySA, Lifetime: time.Hour + time.Second}, "lifetime"},
		{"a boundary rule without permissions", gcpiam.Request{ServiceAccount: deploySA, Lifetime: 5 * time.Minute,
			AccessBoundary: []gcpiam.BoundaryRule{{AvailableResource: "//storage.googleapis.com/projects/_/buckets/b"}}}, "access_boundary"},
	}
	srv := gcpfake.Start(t, grantFixed)
	m := newMinter(t, srv)
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			_, err := m.GenerateAccessToken(context.Background(), tt.req)
			var re *grant.BadGrantError
			if !errors.As(err, &re) || re.Kind != "gcp" {
				t.Fatalf("err = %v (%T), want a *grant.BadGrantError of kind gcp", err, err)
			}
			if re.Field != tt.wantField {
				t.Errorf("field = %q, want %q (%v)", re.Field, tt.wantField, err)
			}
		})
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("server got %d requests, want none", n)
	}
}

func TestValidateServiceAccount(t *testing.T) {
	tests := []struct {
		email string
		ok    bool
	}{
		{"deploy@acme-prod.iam.gserviceaccount.com", true},
		{"123456789012-compute@developer.gserviceaccount.com", true},
		{"acme-prod@appspot.gserviceaccount.com", true},
		{"service-123456789012@gcp-sa-cloudbuild.iam.gserviceaccount.com", true},
		{"sa@my-project.example.com.iam.gserviceaccount.com", true},
		{"", false},
		{"deploy", false},
		{"deploy@", false},
		{"@acme.iam.gserviceaccount.com", false},
		{"alice@example.com", false},
		{"Deploy@acme-prod.iam.gserviceaccount.com", false},
		{"deploy@acme-prod.iam.gserviceaccount.com.evil.com", false},
		{"a@b@acme.iam.gserviceaccount.com", false},
		{"de ploy@acme.iam.gserviceaccount.com", false},
		{"deploy@acme/../x.iam.gserviceaccount.com", false},
		{"deploy@.gserviceaccount.com", false},
		{"deploy@acme..iam.gserviceaccount.com", false},
		{"-deploy@acme.iam.gserviceaccount.com", false},
		{"deploy@acme.iam.gserviceaccount.com\n", false},
	}
	for _, tt := range tests {
		verdict := "is refused"
		if tt.ok {
			verdict = "is accepted"
		}
		t.Run(strings.ReplaceAll(tt.email, "/", "_")+" "+verdict, func(t *testing.T) {
			err := gcpiam.ValidateServiceAccount(tt.email)
			if (err == nil) != tt.ok {
				t.Errorf("ValidateServiceAccount(%q) = %v, want ok=%v", tt.email, err, tt.ok)
			}
		})
	}
}

func FuzzValidateServiceAccount(f *testing.F) {
	for _, s := range []string{deploySA, "a@b.gserviceaccount.com", "x/y@z.gserviceaccount.com", "A@B", "@@", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, email string) {
		if gcpiam.ValidateServiceAccount(email) != nil {
			return
		}
		// Whatever is accepted lands in a resource name unchanged: it must
		// not be able to alter the path or smuggle anything in.
		if strings.Count(email, "@") != 1 || !strings.HasSuffix(email, ".gserviceaccount.com") {
			t.Errorf("accepted %q, which is not NAME@DOMAIN.gserviceaccount.com", email)
		}
		if strings.ContainsAny(email, "/?#%:\\ \t\r\n") || strings.Contains(email, "..") || email != strings.ToLower(email) {
			t.Errorf("accepted %q, which holds a character that does not belong in a service account email", email)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
