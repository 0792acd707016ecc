package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MaxBodyBytes is the contract's request size limit.
const MaxBodyBytes = 64 << 10

// Discovery publishes the keys that verify Ferry-signed tokens.
type Discovery interface {
	DiscoveryJSON() []byte
	JWKSJSON() []byte
}

// HTTPOptions configure the API server.
type HTTPOptions struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Discovery is nil when the broker signs no tokens.
	Discovery Discovery
	// Ready reports whether the broker can serve exchanges now (policies
	// loaded, issuer keys reachable): an error is 503, problems a 200 that
	// names what is degraded.
	Ready func(ctx context.Context) (problems []string, err error)
	// RateLimit per client address; zero PerSecond disables it.
	// TrustedProxies may name the client in X-Forwarded-For; a request
	// from anywhere else is known by its own address.
	TrustedProxies []netip.Prefix
	RatePerSecond  float64
	RateBurst      int
	// RateMaxClients caps the client addresses with a bucket (see
	// limiter); 0 is limit.DefaultMaxKeys.
	RateMaxClients int
}

// NewHandler serves the contract's HTTP API.
func NewHandler(svc *Service, o HTTPOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = ipExtractor(o.TrustedProxies)
	h := &handler{svc: svc, o: o}
	// Routes write their own failures in their own shape; what reaches the
	// global handler is echo's routing (404, 405) and a panic's 503.
	e.HTTPErrorHandler = func(err error, c echo.Context) { h.fail(c, err, h.writeError) }
	e.Use(h.requestID, h.recover)

	limit := newLimiter(o.RatePerSecond, o.RateBurst, o.RateMaxClients)
	// Routes, not an echo Group: a group with middleware answers every
	// other method on its paths with 404 rather than 405.
	e.POST("/v1/exchange", h.exchange, h.failWith(h.writeError), limitBody, h.rateLimit(limit))
	// Any method: RFC 6749 clients expect its error shape even for a GET.
	e.Any(tokenPath, h.tokenExchange, h.failWith(h.writeOAuthError), limitBody, h.rateLimit(limit))
	h.registerRelease(e, limit) // release_http.go: /v1/release, /v1/introspect

	e.Match([]string{http.MethodGet, http.MethodHead}, "/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.Match([]string{http.MethodGet, http.MethodHead}, "/readyz", h.ready)
	if o.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(o.Metrics.Registry, promhttp.HandlerOpts{})))
	}
	e.GET("/.well-known/openid-configuration", h.wellKnown(func(d Discovery) []byte { return d.DiscoveryJSON() }))
	e.GET("/.well-known/jwks.json", h.wellKnown(func(d Discovery) []byte { return d.JWKSJSON() }))
	return e
}

type handler struct {
	svc *Service
	o   HTTPOptions
}

func requestID(c echo.Context) string {
	id, _ := c.Get("request_id").(string)
	return id
}

// ipExtractor says which address a request is rate limited and audited
// under. Trusting X-Forwarded-For from anyone would let any caller pick
// it, so without trusted proxies it is the peer's own; with them, echo walks
// the header from the right past the trusted hops, and nothing else is
// trusted (echo would otherwise trust loopback and private ranges).
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

func (h *handler) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// The id is ours, never the caller's: it keys the audit log.
		id := NewRequestID()
		c.Set("request_id", id)
		c.Response().Header().Set("X-Request-Id", id)
		return next(c)
	}
}

// recover turns a panic into the contract's 503: no failure is a 500, and a
// bug must not take the broker down or grant anything.
func (h *handler) recover(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				h.o.Logger.Error("panic serving request", "request_id", requestID(c), "panic", fmt.Sprint(r))
				err = &unavailable{reason: "internal error; try again"}
			}
		}()
		return next(c)
	}
}

// limitBody bounds what any handler can read of a body to MaxBodyBytes;
// readBody turns going over it into the contract's 413.
func limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		orig := r.Body
		r.Body = http.MaxBytesReader(c.Response(), orig, MaxBodyBytes)
		// net/http decides by the body's own type whether to drain what a
		// handler left unread before answering; behind a wrapper it reads
		// on until the read timeout, for a body nobody will use (a 429 on
		// a request that declares 10 MB). The error is written after this
		// returns, so it sees its own body again.
		defer func() { r.Body = orig }()
		return next(c)
	}
}

// readBody reads a body limitBody has bounded. Its refusals reach the
// handler, so they are audited like any other.
func readBody(c echo.Context) ([]byte, error) {
	if c.Request().ContentLength > MaxBodyBytes {
		// Declared too large: refused without reading a byte, and the
		// connection closed after the answer rather than drained, so the
		// 413 leaves now and not once the client has sent it all (or the
		// read timeout has passed).
		c.Response().Header().Set(echo.HeaderConnection, "close")
		return nil, &tooLarge{}
	}
	body, err := readAll(c.Request().Body, c.Request().ContentLength)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		// The rest of an oversized body is not read either.
		c.Response().Header().Set(echo.HeaderConnection, "close")
		return nil, &tooLarge{}
	}
	if err != nil {
		return nil, badRequestf("could not read the request body")
	}
	return body, nil
}

// readAll reads r to its end. A body whose length was declared is read
// into one buffer of exactly that size, not grown from io.ReadAll's 512
// bytes and copied on the way: net/http ends the body there, and a body
// cut short of it is an error either way (io.ErrUnexpectedEOF).
func readAll(r io.Reader, declared int64) ([]byte, error) {
	if declared <= 0 || declared > MaxBodyBytes {
		return io.ReadAll(r)
	}
	buf := make([]byte, declared)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (h *handler) rateLimit(l *limiter) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if wait, scope := l.allow(c.Request().Context(), c.RealIP()); wait > 0 {
				h.o.Metrics.rateLimited(scope)
				return &throttled{wait: wait}
			}
			return next(c)
		}
	}
}

type exchangeBody struct {
	Policy   string          `json:"policy"`
	Token    string          `json:"token"`
	Duration json.RawMessage `json:"duration"`
}

func (h *handler) exchange(c echo.Context) error {
	body, err := readBody(c)
	var req Request
	if err == nil {
		req, err = decodeExchange(body, c.Request().Header.Values(echo.HeaderAuthorization))
		req.ClientIP, req.RequestID = c.RealIP(), requestID(c)
		if err == nil {
			return h.respond(c, req)
		}
	}
	return h.refuse(c, req.Policy, err)
}

// refuse audits a request refused before it reached the service. A body
// that named a policy keeps its refusal on that policy's line of the
// audit report; the token stays out of it.
func (h *handler) refuse(c echo.Context, policy string, err error) error {
	return h.svc.Refuse(c.Request().Context(), Request{Policy: policy, ClientIP: c.RealIP(), RequestID: requestID(c)}, err)
}

func (h *handler) respond(c echo.Context, req Request) error {
	res, err := h.svc.Exchange(c.Request().Context(), req)
	if err != nil {
		return err
	}
	noStore(c)
	// The answer is marshalled once and sent as it is: c.JSON would run it
	// through an Encoder that validates and compacts a marshaller's output
	// again.
	body, err := res.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode the answer: %w", err)
	}
	return c.JSONBlob(http.StatusOK, append(body, '\n'))
}

// decodeExchange parses POST /v1/exchange strictly (see decodeStrict): a
// misspelt field is an error rather than a silently ignored setting, and
// nothing in the body or its headers can be read two ways.
func decodeExchange(body []byte, authorization []string) (Request, error) {
	var b exchangeBody
	if err := decodeStrict(body, &b, "policy", "token", "duration"); err != nil {
		return Request{}, err
	}
	bearer, err := bearerHeader(authorization)
	if err != nil {
		return Request{Policy: b.Policy}, err
	}
	switch {
	case b.Token == "":
		b.Token = bearer
	case bearer != "" && bearer != b.Token:
		return Request{Policy: b.Policy}, badRequestf("the body and the Authorization header carry different tokens")
	}
	d, err := parseDuration(b.Duration)
	if err != nil {
		return Request{Policy: b.Policy}, err
	}
	if err := checkRequest(b.Policy, b.Token); err != nil {
		return Request{Policy: b.Policy}, err
	}
	return Request{Policy: b.Policy, Token: b.Token, Duration: d}, nil
}

// jsonKind names a Go kind as JSON calls it, never as a Go type.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return "number"
}

// bearerHeader reads the request's Authorization headers: none, or one
// Bearer token. Two are refused, since a proxy that reads the first and a
// server that reads the last would each see another caller.
func bearerHeader(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
		return bearerToken(values[0])
	}
	return "", badRequestf("the request has %d Authorization headers; send one", len(values))
}

func bearerToken(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", badRequestf("the Authorization header must be \"Bearer <token>\"")
	}
	return strings.TrimSpace(tok), nil
}

// parseDuration accepts "15m" as the contract writes it, and a number of
// seconds as aws-actions/configure-aws-credentials' role-duration-seconds.
func parseDuration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, badRequestf("duration %s is not a positive duration such as \"15m\"", quoteShort(s))
		}
		return d, nil
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil || secs <= 0 || secs > 7*24*3600 || secs != math.Trunc(secs) {
		return 0, badRequestf("duration must be a string such as \"15m\" or a whole number of seconds")
	}
	return time.Duration(secs) * time.Second, nil
}

func noStore(c echo.Context) {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
}

func (h *handler) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	if h.o.Ready != nil {
		problems, err := h.o.Ready(ctx)
		if err != nil {
			return &unavailable{reason: "not ready: " + err.Error()}
		}
		if len(problems) > 0 {
			return c.JSON(http.StatusOK, map[string]any{"status": "degraded", "problems": problems})
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

func (h *handler) wellKnown(body func(Discovery) []byte) echo.HandlerFunc {
	return func(c echo.Context) error {
		if h.o.Discovery == nil {
			return &Error{Code: NotFound, Description: "this broker signs no tokens (no token.signing_key configured)"}
		}
		c.Response().Header().Set("Cache-Control", "public, max-age=300")
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body(h.o.Discovery))
	}
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	RequestID   string `json:"request_id,omitempty"`
}

// failWith is a route's error writer: whatever the route's handler or
// middleware returns is classified once and written in the route's shape.
func (h *handler) failWith(write func(echo.Context, *Error)) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := next(c); err != nil {
				h.fail(c, err, write)
			}
			return nil
		}
	}
}

// fail classifies err and writes it with write, logging what the caller is
// not told of a failure that is the broker's own.
func (h *handler) fail(c echo.Context, err error, write func(echo.Context, *Error)) {
	if c.Response().Committed {
		return
	}
	e := classify(fromEcho(err))
	if e.Code == Unavailable && e.Err != nil {
		h.o.Logger.Error("request failed", "request_id", requestID(c), "err", e.Err)
	}
	write(c, e)
}

// writeError writes a failure as the contract's JSON.
func (h *handler) writeError(c echo.Context, e *Error) {
	setRetryAfter(c, e.RetryAfter)
	_ = c.JSON(e.Code.Status(), errorBody{Error: string(e.Code), Description: e.Description, RequestID: requestID(c)})
}

// fromEcho types echo's own errors: routing, and its body limit.
func fromEcho(err error) error {
	var he *echo.HTTPError
	if !errors.As(err, &he) {
		return err
	}
	switch he.Code {
	case http.StatusNotFound:
		return &routeError{code: NotFound}
	case http.StatusMethodNotAllowed:
		return &routeError{code: MethodNotAllowed}
	case http.StatusRequestEntityTooLarge:
		return &tooLarge{}
	}
	if he.Code >= 400 && he.Code < 500 {
		return badRequestf("%s", http.StatusText(he.Code))
	}
	return &unavailable{reason: "internal error; try again", err: he}
}

func setRetryAfter(c echo.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
}
