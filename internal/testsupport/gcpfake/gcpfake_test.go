package gcpfake_test

import (
	"context"
	"testing"
	"time"

	credentials "cloud.google.com/go/iam/credentials/apiv1"
	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
)

func newClient(t *testing.T, s *gcpfake.Server) *credentials.IamCredentialsClient {
	t.Helper()
	c, err := credentials.NewIamCredentialsClient(context.Background(), s.ClientOptions()...)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDefaultHandlerGrantsATokenForTheRequestedLifetimeAndRecordsTheRequest(t *testing.T) {
	s := gcpfake.Start(t, nil)
	c := newClient(t, s)
	before := time.Now()
	resp, err := c.GenerateAccessToken(context.Background(), &credentialspb.GenerateAccessTokenRequest{
		Name:     "projects/-/serviceAccounts/a@p.iam.gserviceaccount.com",
		Scope:    []string{"s"},
		Lifetime: durationpb.New(10 * time.Minute),
	})
	if err != nil {
		t.Fatalf("GenerateAccessToken: %v", err)
	}
	if resp.GetAccessToken() != "ya29.fake-a@p.iam.gserviceaccount.com" {
		t.Errorf("access token = %q", resp.GetAccessToken())
	}
	if exp := resp.GetExpireTime().AsTime(); exp.Before(before.Add(10*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("expire time %v is not the requested ten minutes from the call", exp)
	}
	reqs := s.Requests()
	if len(reqs) != 1 || reqs[0].GetName() != "projects/-/serviceAccounts/a@p.iam.gserviceaccount.com" {
		t.Fatalf("requests = %v", reqs)
	}
	reqs[0].Name = "changed"
	if s.Requests()[0].GetName() == "changed" {
		t.Errorf("Requests returned the server's own record, not a copy")
	}
}

func TestErrorCarriesTheCodeAndReasonToTheClient(t *testing.T) {
	s := gcpfake.Start(t, func(context.Context, *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
		return nil, gcpfake.Error(codes.PermissionDenied, "IAM_PERMISSION_DENIED", "denied")
	})
	_, err := newClient(t, s).GenerateAccessToken(context.Background(), &credentialspb.GenerateAccessTokenRequest{Name: "projects/-/serviceAccounts/a@p.iam.gserviceaccount.com"})
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.PermissionDenied || st.Message() != "denied" {
		t.Fatalf("err = %v, want PermissionDenied: denied", err)
	}
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != "IAM_PERMISSION_DENIED" {
		t.Errorf("ErrorInfo reason = %q, want IAM_PERMISSION_DENIED", reason)
	}
}
