// Package broker assembles a running Ferry from its config: verifier,
// policies, replay store, audit log, the grant kinds' minters (the kinds
// and platforms come from internal/registry) and the HTTP server.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/exchange"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/identity"
	"github.com/ferry-broker/ferry/internal/limit"
	"github.com/ferry-broker/ferry/internal/policystore"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/replay"
	"github.com/ferry-broker/ferry/internal/trust"
)

// Options are what a config file cannot say.
type Options struct {
	Logger *slog.Logger
	// Minters replace, by kind name, the minters the grant kinds would
	// build from the config: tests point them at local fakes, the demo
	// signs with a key of its own. A nil entry leaves that kind without a
	// minter.
	Minters map[string]grant.Minter
	// MemoryLimit is the process's memory limit in bytes (GOMEMLIMIT, as
	// the runtime holds it), or 0 for none. It bounds the memory replay
	// store (replay.ForMemoryLimit).
	MemoryLimit int64
}

// Broker is an assembled, runnable Ferry.
type Broker struct {
	cfg      *config.Config
	logger   *slog.Logger
	policies *policystore.Store
	verifier *identity.Pool
	audit    *audit.Log
	auditCPs *audit.Checkpointer
	replay   replay.Store
	minters  map[string]grant.Minter
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

	kinds, platforms := registry.Kinds(), registry.Platforms()
	issuers := make([]identity.IssuerConfig, len(cfg.Issuers))
	for i, is := range cfg.Issuers {
		issuers[i] = identity.IssuerConfig{Name: is.Name, IssuerURL: is.Issuer, Audiences: is.Audiences, JWKSURL: is.JWKSURL}
	}
	if b.verifier, err = identity.NewPool(issuers, identity.Options{Logger: logger, Claims: platforms}); err != nil {
		return nil, fmt.Errorf("issuers: %w", err)
	}
	loadOpts := trust.LoadOptions{Issuers: cfg.IssuerNames(), Kinds: kinds, Platforms: platforms}
	if b.policies, err = policystore.Open(cfg.Policies, loadOpts, logger); err != nil {
		return nil, err
	}
	if b.replay, err = openReplay(ctx, cfg.Replay, o.MemoryLimit, logger); err != nil {
		return nil, err
	}
	if b.audit, err = audit.Open(cfg.Audit.Path, audit.WithLogger(logger)); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if b.minters, err = openMinters(ctx, kinds, grant.Env{Config: cfg, Logger: logger}, o.Minters); err != nil {
		return nil, err
	}
	warnUnservable(logger, b.policies.Current(), b.minters)

	metrics := exchange.NewMetrics(b.policies.Known, kinds.Names()...)
	deps := exchange.Deps{
		Verifier: b.verifier, Policies: b.policies, Replay: b.replay, Audit: b.audit,
		Kinds: kinds, Minters: retrying(b.minters, metrics), Platforms: platforms,
		Limits: limits(cfg.RateLimit, b.replay),
		Logger: logger, Metrics: metrics,
	}
	deps.Metrics.Registry.MustRegister(b.verifier.Collector(), b.policies.Collector(), b.audit.Collector())
	if b.auditCPs, err = startCheckpoints(b.audit, logger, b.minters); err != nil {
		return nil, err
	}
	if b.service, err = exchange.New(deps); err != nil {
		return nil, err
	}
	httpOpts := exchange.HTTPOptions{
		Logger: logger, Metrics: deps.Metrics, Ready: b.ready,
		RatePerSecond: cfg.RateLimit.PerSecond, RateBurst: cfg.RateLimit.Burst, RateMaxClients: cfg.RateLimit.MaxClients,
		TrustedProxies: cfg.TrustedProxyNets(),
	}
	for _, m := range b.minters {
		// The kind that signs tokens publishes the keys that verify them.
		if d, ok := m.(exchange.Discovery); ok {
			httpOpts.Discovery = d
		}
	}
	b.handler = exchange.NewHandler(b.service, httpOpts)
	return b, nil
}

// openMinters builds each kind's minter, or takes the one the caller gave.
func openMinters(ctx context.Context, kinds grant.Kinds, env grant.Env, given map[string]grant.Minter) (map[string]grant.Minter, error) {
	out := make(map[string]grant.Minter, len(kinds))
	for _, k := range kinds {
		m, ok := given[k.Name()]
		if !ok {
			var err error
			if m, err = k.NewMinter(ctx, env); err != nil {
				closeMinters(out)
				return nil, err
			}
		}
		if m != nil {
			out[k.Name()] = m
		}
	}
	return out, nil
}

func closeMinters(ms map[string]grant.Minter) error {
	var errs []error
	for _, m := range ms {
		if c, ok := m.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// retrying wraps every kind's minter in the one retry policy (see
// grant.Retrying): transient provider failures retried with backoff inside
// the mint timeout, a cap on calls in flight per kind. The broker keeps the
// minters unwrapped for what it asks of them itself (keys, Close).
func retrying(minters map[string]grant.Minter, m *exchange.Metrics) map[string]grant.Minter {
	out := make(map[string]grant.Minter, len(minters))
	for kind, mt := range minters {
		out[kind] = grant.Retrying(kind, mt, grant.RetryOptions{Hooks: m.RetryHooks()})
	}
	return out
}

// limits are the per-repository and per-policy rate limits: in Redis when
// the replay store is, so replicas share them, else in this process.
func limits(c config.RateLimit, store replay.Store) exchange.Limits {
	l := exchange.Limits{
		PerRepository: limit.PerMinute(c.PerRepository.PerMinute, c.PerRepository.Burst),
		PerPolicy:     limit.PerMinute(c.PerPolicy.PerMinute, c.PerPolicy.Burst),
	}
	if l.PerRepository.Zero() && l.PerPolicy.Zero() {
		return l
	}
	if r, ok := store.(*replay.Redis); ok {
		l.Limiter = limit.NewRedis(r.Client())
	} else {
		l.Limiter = limit.NewMemory()
	}
	return l
}

func openReplay(ctx context.Context, c config.Replay, memoryLimit int64, logger *slog.Logger) (replay.Store, error) {
	if c.Store == "redis" {
		s, err := replay.NewRedis(ctx, c.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("replay store: %w", err)
		}
		return s, nil
	}
	opts := replay.ForMemoryLimit(memoryLimit)
	m := replay.NewMemory(opts...)
	if len(opts) > 0 {
		entries, records := m.Bounds()
		logger.Info("memory replay store bounded by the memory limit", "memory_limit_bytes", memoryLimit,
			"max_token_ids", entries, "max_record_bytes", records)
	}
	return m, nil
}

// warnUnservable names, at start, the policies this broker cannot mint for,
// so the operator hears it before a pipeline does.
func warnUnservable(logger *slog.Logger, set *trust.Set, minters map[string]grant.Minter) {
	for _, p := range set.Policies() {
		if minters[p.Grant.Kind()] == nil {
			logger.Warn("policy cannot be served: no minter for its grant kind", "policy", p.Name, "grant", p.Grant.Kind(), "file", p.File())
		}
	}
}

// ready is /readyz: 503 while this replica would refuse every exchange
// (no policies, a replay store or audit log that cannot take a write, no
// issuer that can verify tokens), each reason named; 200 "degraded" while
// only some issuers are down, since a gitlab.com outage must not take the
// replicas away from GitHub jobs.
func (b *Broker) ready(ctx context.Context) ([]string, error) {
	var down []string
	if b.policies.Current() == nil {
		down = append(down, "no policies loaded")
	}
	if c, ok := b.replay.(replay.Checker); ok {
		switch err := c.Healthy(ctx); {
		case errors.Is(err, replay.ErrFull):
			down = append(down, err.Error())
		case err != nil:
			down = append(down, "replay store unreachable: "+err.Error())
		}
	}
	if err := b.audit.Healthy(); err != nil {
		down = append(down, err.Error())
	}
	problems, err := b.verifier.Readiness(ctx)
	if err != nil {
		down = append(down, err.Error())
	}
	if len(down) > 0 {
		return problems, errors.New(strings.Join(down, "; "))
	}
	return problems, nil
}

// Handler is the HTTP API.
func (b *Broker) Handler() http.Handler { return b.handler }

// Service is the exchange service behind the API.
func (b *Broker) Service() *exchange.Service { return b.service }

// Serve answers on ln until ctx ends, over HTTPS when the config names a
// certificate, reloading policies on SIGHUP and on the configured interval,
// then shuts down gracefully.
func (b *Broker) Serve(ctx context.Context, ln net.Listener) error {
	tlsConfig, err := b.tlsConfig(ln)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           b.handler,
		TLSConfig:         tlsConfig,
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
	go func() { errc <- serveHTTP(srv, ln) }()
	b.logger.Info("ferry serving", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "policies", b.policies.Current().Len())
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
	if b.auditCPs != nil {
		b.auditCPs.Stop() // the final checkpoint, once no more records come
	}
	if b.audit != nil {
		errs = append(errs, b.audit.Close())
	}
	if c, ok := b.replay.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	errs = append(errs, closeMinters(b.minters))
	return errors.Join(errs...)
}
