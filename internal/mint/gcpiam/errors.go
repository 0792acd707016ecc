package gcpiam

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// UpstreamError is Google refusing or failing a call, or the call running
// out of time. Callers map it to a 502 and can branch on Code (and Reason,
// Google's machine-readable ErrorInfo reason such as
// "IAM_PERMISSION_DENIED"). Its text never contains a token.
type UpstreamError struct {
	// Op is what was attempted, e.g. "generate access token for SA".
	Op string
	// Code is the gRPC status code (for the STS exchange, mapped from HTTP).
	Code codes.Code
	// Reason is Google's ErrorInfo reason, or the OAuth error code from STS;
	// empty when Google gave none.
	Reason string
	// Message is Google's human-readable explanation.
	Message string
	// Err is the underlying error; for a deadline or cancellation it matches
	// context.DeadlineExceeded / context.Canceled with errors.Is.
	Err error
}

func (e *UpstreamError) Error() string {
	s := "gcp " + e.Op + ": " + e.Code.String()
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// fromRPC turns an error from the IAM Credentials client into an
// *UpstreamError. The caller's context is consulted first: when it has
// ended, that is the story, whatever status the transport made of it —
// unless every attempt until then found Google unreachable, which is
// what the operator must learn (the last attempt's error, with the
// address tried, stays in Err for the log).
func fromRPC(ctx context.Context, op string, err error, last *lastAttempt) *UpstreamError {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) && last.unreachable() {
			return &UpstreamError{Op: op, Code: codes.Unavailable, Message: "Google could not be reached before the request deadline",
				Err: errors.Join(ctxErr, last.get())}
		}
		return contextError(ctx, op, errors.Join(ctxErr, err))
	}
	st, ok := status.FromError(err)
	if !ok {
		return &UpstreamError{Op: op, Code: codes.Unknown, Message: err.Error(), Err: err}
	}
	e := &UpstreamError{Op: op, Code: st.Code(), Message: st.Message(), Err: err}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			e.Reason = info.GetReason()
			break
		}
	}
	if e.Code == codes.DeadlineExceeded && e.Message == "" {
		e.Message = "Google did not answer in time"
	}
	return e
}

// contextError reports a call cut short by its context.
func contextError(ctx context.Context, op string, err error) *UpstreamError {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg := "no answer from Google before the request deadline"
		if dl, ok := ctx.Deadline(); ok {
			msg = fmt.Sprintf("no answer from Google before the request deadline (%s)", dl.UTC().Format("15:04:05.000Z07:00"))
		}
		return &UpstreamError{Op: op, Code: codes.DeadlineExceeded, Message: msg, Err: err}
	}
	return &UpstreamError{Op: op, Code: codes.Canceled, Message: "request canceled before Google answered", Err: err}
}
