package ghapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/go-github/v89/github"

	"github.com/ferry-broker/ferry/internal/grant"
)

// Provider names GitHub in errors the caller sees.
const Provider = "GitHub"

// maxMessage bounds GitHub's message as passed on.
const maxMessage = 300

// installationError is upstreamError for the installation lookup, whose 404
// means the App is not installed where the policy points.
func installationError(ctx context.Context, owner, repo string, err error) error {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound {
		return &grant.UpstreamError{Provider: Provider, Code: "404", Err: err,
			Message: fmt.Sprintf("the GitHub App is not installed on %s, or not for its repository %s/%s (GitHub: %s)", owner, owner, repo, message(er.Message, http.StatusNotFound))}
	}
	return upstreamError(ctx, err)
}

// upstreamError turns a go-github error into the grant seam's. GitHub's
// status and message are kept for the caller; a GitHub that cannot be
// reached is said in words, the transport's detail (which names the host)
// staying in Err, for the server's log.
func upstreamError(ctx context.Context, err error) error {
	out := &grant.UpstreamError{Provider: Provider, Err: err}
	var (
		rl    *github.RateLimitError
		abuse *github.AbuseRateLimitError
		er    *github.ErrorResponse
		syn   *json.SyntaxError
		typ   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &rl):
		out.Code, out.Message, out.Transient = status(rl.Response), message(rl.Message, 0), true
		if d := time.Until(rl.Rate.Reset.Time); d > 0 {
			out.RetryAfter = d
		}
	case errors.As(err, &abuse):
		out.Code, out.Message, out.Transient = status(abuse.Response), message(abuse.Message, 0), true
		if abuse.RetryAfter != nil {
			out.RetryAfter = *abuse.RetryAfter
		}
	case errors.As(err, &er):
		code := 0
		if er.Response != nil {
			code = er.Response.StatusCode
		}
		out.Code, out.Message = strconv.Itoa(code), message(er.Message, code)
		out.Transient = code >= 500 || code == http.StatusTooManyRequests
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		out.Message, out.Transient = "did not answer in time", true
	case errors.Is(err, context.Canceled):
		out.Message = "request canceled"
	case errors.Is(err, errOtherHost):
		out.Message = errOtherHost.Error()
	case errors.As(err, &syn) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF):
		out.Message, out.Transient = "answered with a body that is not GitHub's JSON", true
	default:
		out.Message, out.Transient = "could not be reached", true
	}
	return out
}

func status(r *http.Response) string {
	if r == nil {
		return ""
	}
	return strconv.Itoa(r.StatusCode)
}

// message is GitHub's message made safe to pass on: one line, printable,
// bounded. An empty one is the status's own text.
func message(m string, code int) string {
	m = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(m))
	if r := []rune(m); len(r) > maxMessage {
		m = string(r[:maxMessage]) + "…"
	}
	if m == "" && code != 0 {
		m = http.StatusText(code)
	}
	return m
}
