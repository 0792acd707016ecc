package gcpiam

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lastAttempt remembers the error of a call's last RPC attempt. The
// client retries an unreachable Google until the deadline and then
// returns only the context's error, so without it the server's log would
// say "deadline exceeded" for a Google that refused every connection.
type lastAttempt struct {
	mu  sync.Mutex
	err error
}

type lastAttemptKey struct{}

// withLastAttempt returns ctx carrying a where the interceptor records.
func withLastAttempt(ctx context.Context) (context.Context, *lastAttempt) {
	a := &lastAttempt{}
	return context.WithValue(ctx, lastAttemptKey{}, a), a
}

func (a *lastAttempt) get() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// unreachable reports whether the last attempt found no Google to talk to.
func (a *lastAttempt) unreachable() bool {
	return status.Code(a.get()) == codes.Unavailable
}

// recordAttempts is a client interceptor that keeps each attempt's error
// in the call's lastAttempt, when it has one.
func recordAttempts(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if a, ok := ctx.Value(lastAttemptKey{}).(*lastAttempt); ok && err != nil {
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
	}
	return err
}
