// Package gcpfake runs Google's IAM Credentials API in-process for tests: a
// real gRPC server on a loopback port implementing
// credentialspb.IAMCredentialsServer, so code under test drives the real
// cloud.google.com/go/iam/credentials client library (its request encoding,
// retries, deadlines and error statuses) rather than a stub of the client.
//
// The test supplies the handler, so it decides what "Google" answers: a
// token, or a status such as PermissionDenied with an ErrorInfo reason.
// Every request is recorded so the test can assert what the broker sent.
package gcpfake

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Handler answers one GenerateAccessToken call as Google would.
type Handler func(ctx context.Context, req *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error)

// Server is one running fake IAM Credentials API.
type Server struct {
	// Addr is the loopback host:port the gRPC server listens on.
	Addr string

	handler Handler
	srv     *grpc.Server

	mu       sync.Mutex
	requests []*credentialspb.GenerateAccessTokenRequest
}

// Start listens on a free loopback port and serves until the test ends.
// A nil handler answers every request with Token.
func Start(t testing.TB, handler Handler) *Server {
	t.Helper()
	if handler == nil {
		handler = Token
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gcpfake: listen: %v", err)
	}
	s := &Server{Addr: lis.Addr().String(), handler: handler, srv: grpc.NewServer()}
	credentialspb.RegisterIAMCredentialsServer(s.srv, &service{s: s})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Serve returns when Stop is called; any other error surfaces as
		// failed calls in the test itself.
		_ = s.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		// Stop, not GracefulStop: a handler blocked until its context ends
		// must not hold up the test's cleanup.
		s.srv.Stop()
		<-done
	})
	return s
}

// ClientOptions point a real IAM Credentials client at this server over
// plaintext gRPC with no Google credentials.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.Addr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// Requests returns copies of the GenerateAccessToken requests received so
// far, oldest first.
func (s *Server) Requests() []*credentialspb.GenerateAccessTokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*credentialspb.GenerateAccessTokenRequest, len(s.requests))
	for i, r := range s.requests {
		out[i] = proto.Clone(r).(*credentialspb.GenerateAccessTokenRequest)
	}
	return out
}

type service struct {
	credentialspb.UnimplementedIAMCredentialsServer
	s *Server
}

func (v *service) GenerateAccessToken(ctx context.Context, req *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
	v.s.mu.Lock()
	v.s.requests = append(v.s.requests, proto.Clone(req).(*credentialspb.GenerateAccessTokenRequest))
	v.s.mu.Unlock()
	return v.s.handler(ctx, req)
}

// Token is the default handler: it grants every request a token named after
// the service account, valid for the requested lifetime (one hour when none
// is given, as Google does).
func Token(_ context.Context, req *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
	lifetime := time.Hour
	if req.GetLifetime() != nil {
		lifetime = req.GetLifetime().AsDuration()
	}
	return &credentialspb.GenerateAccessTokenResponse{
		AccessToken: "ya29.fake-" + strings.TrimPrefix(req.GetName(), "projects/-/serviceAccounts/"),
		ExpireTime:  timestamppb.New(time.Now().Add(lifetime)),
	}, nil
}

// Error builds the status error Google returns, with a google.rpc.ErrorInfo
// detail carrying reason when reason is not empty, e.g.
// Error(codes.PermissionDenied, "IAM_PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied").
func Error(code codes.Code, reason, message string) error {
	st := status.New(code, message)
	if reason == "" {
		return st.Err()
	}
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   reason,
		Domain:   "iam.googleapis.com",
		Metadata: map[string]string{"permission": "iam.serviceAccounts.getAccessToken"},
	})
	if err != nil {
		panic(fmt.Sprintf("gcpfake: attach ErrorInfo: %v", err))
	}
	return withInfo.Err()
}
