package awssts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode"

	"github.com/ferry-broker/ferry/internal/grant"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// maxMessageLen caps how much upstream text is carried into an error: a
// proxy answering with an HTML page should not end up in every log line.
const maxMessageLen = 512

// sdkUnknownError is the code the SDK's query-protocol decoder reports when
// an error response holds no code it can find.
const sdkUnknownError = "UnknownError"

// UpstreamError is STS refusing a call, or STS being unreachable. Its text
// names the operation, AWS's error code and AWS's message, e.g.
// "sts AssumeRole: AccessDenied: User: arn:… is not authorized to perform:
// sts:AssumeRole on resource: arn:…". It never holds credentials: neither the
// broker's own (they travel only in a request signature) nor minted ones (an
// error means none were minted).
type UpstreamError struct {
	// Op is the STS operation, e.g. "AssumeRole".
	Op string
	// Code is AWS's error code (AccessDenied, ValidationError,
	// RegionDisabledException, PackedPolicyTooLarge, ExpiredToken,
	// InvalidClientTokenId, Throttling…); empty when no answer came back
	// (network failure, timeout, cancellation).
	Code string
	// Message is AWS's error message, or what went wrong on the way.
	Message string
	// StatusCode is the HTTP status of STS's answer; 0 when none came back.
	StatusCode int
	// RequestID is AWS's request id when STS answered, for AWS support and
	// CloudTrail look-ups.
	RequestID string
	// Err is the SDK's error, for errors.Is/As (context.DeadlineExceeded,
	// smithy.APIError, net.Error).
	Err error
}

func (e *UpstreamError) Error() string {
	var b strings.Builder
	b.WriteString("sts ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Unwrap returns the SDK's error.
func (e *UpstreamError) Unwrap() error { return e.Err }

// Timeout reports whether the call ran out of time (the context's deadline
// or a network timeout), as opposed to being refused.
func (e *UpstreamError) Timeout() bool {
	var ne net.Error
	return errors.Is(e.Err, context.DeadlineExceeded) || (errors.As(e.Err, &ne) && ne.Timeout())
}

func newUpstreamError(op string, err error) *UpstreamError {
	e := &UpstreamError{Op: op, Err: err}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.RequestID = re.ServiceRequestID()
		e.StatusCode = re.HTTPStatusCode()
	}
	var apiErr smithy.APIError
	var sendErr *smithyhttp.RequestSendError
	var opErr *net.OpError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode() != sdkUnknownError:
		e.Code = clean(apiErr.ErrorCode())
		e.Message = clean(apiErr.ErrorMessage())
		if e.Message == "" {
			e.Message = "no message"
		}
	case e.StatusCode != 0:
		// An answer came that the SDK could not read (a proxy's HTML page, an
		// STS look-alike with another error shape); its status is the clue.
		e.Message = fmt.Sprintf("HTTP %d with a response the AWS SDK could not read", e.StatusCode)
	case errors.Is(err, context.DeadlineExceeded):
		e.Message = "no answer before the deadline (context deadline exceeded)"
	case errors.Is(err, context.Canceled):
		e.Message = "request canceled"
	case errors.As(err, &opErr):
		// "dial tcp 127.0.0.1:443: connect: connection refused" says it all;
		// the SDK's wrapping around it adds only noise.
		e.Message = "request failed: " + clean(opErr.Error())
	case errors.As(err, &sendErr):
		e.Message = "request failed: " + clean(sendErr.Err.Error())
	default:
		e.Message = clean(err.Error())
	}
	return e
}

// clean makes upstream text one printable line of bounded length.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessageLen {
		cut := maxMessageLen
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// throttlingCodes are STS's answers that mean "too many requests, try
// again", as the AWS SDK's own retryer reads them.
var throttlingCodes = map[string]bool{
	"Throttling": true, "ThrottlingException": true, "ThrottledException": true, "RequestThrottledException": true,
	"TooManyRequestsException": true, "RequestLimitExceeded": true, "SlowDown": true, "PriorRequestNotComplete": true,
	"ServiceUnavailable": true, "InternalFailure": true, "InternalError": true,
}

// asGrantError turns what AssumeRole returned into the grant seam's error
// types. STS's own code and message are kept for the caller; a failure to
// reach STS is said in words, the address it tried staying in Err for the
// server's log, since in production it is an internal endpoint.
func asGrantError(err error) error {
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		return err // a *grant.BadGrantError, or a bug: left as is
	}
	out := &grant.UpstreamError{Provider: "AWS STS", Code: ue.Code, Err: err}
	switch {
	case ue.Code != "":
		out.Message = ue.Message
		out.Transient = throttlingCodes[ue.Code] || ue.StatusCode >= 500
	case ue.StatusCode != 0:
		out.Message = fmt.Sprintf("HTTP %d with a response the AWS SDK could not read", ue.StatusCode)
		out.Transient = ue.StatusCode >= 500 || ue.StatusCode == 429
	case ue.Timeout():
		out.Message, out.Transient = "did not answer in time", true
	case errors.Is(err, context.Canceled):
		out.Message = "request canceled"
	default:
		out.Message, out.Transient = "could not be reached", true
	}
	return out
}
