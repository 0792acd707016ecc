// Package broker assembles a running Ferry from its config: verifier,
// policies, replay store, audit log, minters and the HTTP server.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/api/option"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/policystore"
	"github.com/ferry-broker/ferry/internal/replay"
	"github.com/ferry-broker/ferry/internal/trust"
)

// Options are what a config file cannot say.
type Options struct {
	Logger *slog.Logger
	// DevSigningKey signs Ferry tokens when the config names no key; only
	// `ferry demo` sets it.
	DevSigningKey *tokensign.Key
	// GCPClientOptions are passed to the IAM Credentials client (tests point
	// it at an in-process server).
	GCPClientOptions []option.ClientOption
	// NoGCP skips building the GCP client, for brokers that need none.
	NoGCP bool
}

// Broker is an assembled, runnable Ferry.
type Broker struct {
	cfg      *config.Config
	logger   *slog.Logger
	policies *policystore.Store
	verifier *identity.Pool
	audit    *audit.Log
	replay   replay.Store
	gcp      *gcpiam.Minter
	signer   *tokensign.Signer
	service  *exchange.Service
	handler  http.Handler
}

// New builds a broker. Everything that can be checked before serving is
// checked here, so a bad config fails at start with a clear error.
func New(ctx context.Context, cfg *config.Config, o Options) (_ *Broker, err error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// b is closed, not returned, when a later step fails: the named result
	// is nil then, so the cleanup must hold its own reference.
	b := &Broker{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()

	issuers := make([]identity.IssuerConfig, len(cfg.Issuers))
	for i, is := range cfg.Issuers {
		issuers[i] = identity.IssuerConfig{Name: is.Name, IssuerURL: is.Issuer, Audiences: is.Audiences, JWKSURL: is.JWKSURL}
	}
	if b.verifier, err = identity.NewPool(issuers, identity.Options{Logger: logger}); err != nil {
		return nil, fmt.Errorf("issuers: %w", err)
	}
	if b.policies, err = policystore.Open(cfg.Policies, trust.LoadOptions{Issuers: cfg.IssuerNames()}, logger); err != nil {
		return nil, err
	}
	if b.replay, err = openReplay(ctx, cfg.Replay); err != nil {
		return nil, err
	}
	if b.audit, err = audit.Open(cfg.Audit.Path); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}

	deps := exchange.Deps{
		Verifier: b.verifier, Policies: b.policies, Replay: b.replay, Audit: b.audit,
		Logger: logger, Metrics: exchange.NewMetrics(b.policies.Known),
	}
	deps.Metrics.Registry.MustRegister(b.verifier.Collector())
	if deps.AWS, err = awssts.New(ctx); err != nil {
		logger.Warn("AWS minter unavailable; aws grants will be refused", "err", err)
		deps.AWS = nil
	}
	if !o.NoGCP {
		if b.gcp, err = gcpiam.New(ctx, o.GCPClientOptions...); err != nil {
			logger.Warn("GCP minter unavailable (no Application Default Credentials?); gcp grants will be refused", "err", err)
			b.gcp = nil
		} else {
			deps.GCP = b.gcp
		}
	}
	if b.signer, err = loadSigner(cfg.Token, o.DevSigningKey); err != nil {
		return nil, err
	}
	if b.signer != nil {
		deps.Token = b.signer
	}
	warnUnservable(logger, b.policies.Current(), deps)

	if b.service, err = exchange.New(deps); err != nil {
		return nil, err
	}
	httpOpts := exchange.HTTPOptions{
		Logger: logger, Metrics: deps.Metrics, Ready: b.ready,
		RatePerSecond: cfg.RateLimit.PerSecond, RateBurst: cfg.RateLimit.Burst,
		TrustedProxies: cfg.TrustedProxyNets(),
	}
	if b.signer != nil {
		httpOpts.Discovery = b.signer
	}
	b.handler = exchange.NewHandler(b.service, httpOpts)
	return b, nil
}

func openReplay(ctx context.Context, c config.Replay) (replay.Store, error) {
	if c.Store == "redis" {
		s, err := replay.NewRedis(ctx, c.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("replay store: %w", err)
		}
		return s, nil
	}
	return replay.NewMemory(), nil
}

func loadSigner(c config.Token, dev *tokensign.Key) (*tokensign.Signer, error) {
	var active *tokensign.Key
	switch {
	case c.SigningKey != "":
		k, err := tokensign.LoadKeyFile(c.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("token.signing_key: %w", err)
		}
		active = k
	case dev != nil:
		active = dev
	default:
		return nil, nil
	}
	var previous []*tokensign.Key
	for _, p := range c.PreviousKeys {
		k, err := tokensign.LoadKeyFile(p)
		if err != nil {
			return nil, fmt.Errorf("token.previous_keys: %w", err)
		}
		previous = append(previous, k)
	}
	if c.Issuer == "" {
		return nil, errors.New("token.issuer: required to sign tokens")
	}
	s, err := tokensign.NewSigner(c.Issuer, active, previous...)
	if err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	return s, nil
}

// warnUnservable names, at start, the policies this broker cannot mint for,
// so the operator hears it before a pipeline does.
func warnUnservable(logger *slog.Logger, set *trust.Set, d exchange.Deps) {
	for _, p := range set.Policies() {
		var missing bool
		switch p.Grant.Type() {
		case "aws":
			missing = d.AWS == nil
		case "gcp":
			missing = d.GCP == nil
		case "token":
			missing = d.Token == nil
		}
		if missing {
			logger.Warn("policy cannot be served: no minter for its grant type", "policy", p.Name, "grant", p.Grant.Type(), "file", p.File)
		}
	}
}

// ready is /readyz: policies loaded and every issuer's keys reachable.
func (b *Broker) ready(ctx context.Context) ([]string, error) {
	if b.policies.Current() == nil {
		return nil, errors.New("no policies loaded")
	}
	return b.verifier.Readiness(ctx)
}

// Handler is the HTTP API.
func (b *Broker) Handler() http.Handler { return b.handler }

// Service is the exchange service behind the API.
func (b *Broker) Service() *exchange.Service { return b.service }

// Serve answers on ln until ctx ends, reloading policies on SIGHUP and on the
// configured interval, then shuts down gracefully.
func (b *Broker) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           b.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(b.logger.Handler(), slog.LevelWarn),
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go b.policies.Watch(watchCtx, time.Duration(b.cfg.PolicyReload), hup)
	go b.verifier.Run(watchCtx) // scheduled issuer key refetches

	// Fetch issuer keys now, so the first pipeline does not wait on it; an
	// issuer that is down is retried on demand and reported by /readyz.
	go func() {
		wctx, cancel := context.WithTimeout(watchCtx, 15*time.Second)
		defer cancel()
		if err := b.verifier.Warm(wctx); err != nil {
			b.logger.Warn("could not fetch every issuer's keys yet", "err", err)
		}
	}()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	b.logger.Info("ferry serving", "addr", ln.Addr().String(), "policies", b.policies.Current().Len())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close releases files and connections.
func (b *Broker) Close() error {
	var errs []error
	if b.audit != nil {
		errs = append(errs, b.audit.Close())
	}
	if c, ok := b.replay.(interface{ Close() error }); ok {
		errs = append(errs, c.Close())
	}
	if b.gcp != nil {
		errs = append(errs, b.gcp.Close())
	}
	return errors.Join(errs...)
}
