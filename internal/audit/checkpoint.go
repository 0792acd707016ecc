package audit

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The hash chain catches an edited, removed or reordered record, but not
// records cut off the end: what is left still chains. A checkpoint closes
// that gap. It says "the audit file's first Count records end with the
// record whose hash is Hash", and the broker logs one at least once a
// minute while records are written, and at shutdown, to its log stream
// (slog on stderr) — which operators ship somewhere the audit file's host
// cannot rewrite. `ferry audit verify FILE --checkpoints LOG` then fails
// when FILE is shorter than, or diverges from, any checkpoint in LOG.
//
// A checkpoint line is the log handler's JSON with these members:
//
//	{"time":"2026-11-23T10:15:00.123456789Z","level":"INFO","msg":"audit checkpoint",
//	 "count":1234,"hash":"<64 hex>","file":"/var/lib/ferry/audit.log","signature":"<JWS>"}
//
// time is the checkpoint's own time (the log record carries it), file is
// informational, and signature, present when the broker has a token
// signing key, is a detached compact JWS (RFC 7515 appendix F) over
// Checkpoint.Payload, signed by that key (kid in its header), so it
// verifies against the broker's JWKS.

// CheckpointMsg is the log message of a checkpoint line.
const CheckpointMsg = "audit checkpoint"

// checkpointPurpose and checkpointType bind a signature to its use: a
// checkpoint signature is never a token and no token verifies as one.
const (
	checkpointPurpose = "ferry audit checkpoint"
	checkpointType    = "ferry-audit-checkpoint"
)

// DefaultCheckpointInterval is how often a Checkpointer logs while records
// are written.
const DefaultCheckpointInterval = time.Minute

// Checkpoint pins the head of an audit file.
type Checkpoint struct {
	Count     int64     // records in the file
	Hash      string    // the Count-th record's hash (the chain's start when Count is 0)
	Time      time.Time // when it was taken
	Signature string    // detached compact JWS over Payload; "" when unsigned
	// Source is where ReadCheckpoints found it, "LOG:LINE".
	Source string
}

// Payload is what a checkpoint's signature covers: its count, hash and
// time (UTC, RFC 3339 with nanoseconds, as the log line carries it) and
// the purpose.
func (c Checkpoint) Payload() []byte {
	return fmt.Appendf(nil, `{"purpose":%q,"count":%d,"hash":%q,"time":%q}`,
		checkpointPurpose, c.Count, c.Hash, c.Time.UTC().Format(time.RFC3339Nano))
}

// SignFunc signs a checkpoint's payload and returns a detached compact JWS
// (header..signature). JWSSigner makes one from a private key.
type SignFunc func(payload []byte) (string, error)

// JWSSigner signs checkpoints with key as JWS algorithm alg (ES256, RS256,
// EdDSA…), naming kid in the header — the key id the broker's JWKS
// publishes the public key under.
func JWSSigner(key crypto.Signer, kid string, alg string) (SignFunc, error) {
	s, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(checkpointType),
	)
	if err != nil {
		return nil, fmt.Errorf("checkpoint signer: %w", err)
	}
	return func(payload []byte) (string, error) {
		jws, err := s.Sign(payload)
		if err != nil {
			return "", fmt.Errorf("sign audit checkpoint: %w", err)
		}
		return jws.DetachedCompactSerialize()
	}, nil
}

// CheckpointOptions configures a Checkpointer.
type CheckpointOptions struct {
	// Interval between checks for new records (DefaultCheckpointInterval
	// when zero); a checkpoint is logged when there are some.
	Interval time.Duration
	// Sign signs each checkpoint; nil logs them unsigned.
	Sign SignFunc
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Checkpointer logs checkpoints of a Log: every Interval when records were
// committed since the last one, and once more at Stop. Checkpoints are
// written straight to the logger's handler, whatever its level: they are
// part of the audit trail, not diagnostics.
type Checkpointer struct {
	log    *Log
	logger *slog.Logger
	o      CheckpointOptions

	startOnce, stopOnce sync.Once
	stop, done          chan struct{}

	mu     sync.Mutex // serialises checkpoints, so counts only grow in the log
	last   int64
	logged bool
}

// NewCheckpointer returns a Checkpointer of log that writes to logger.
func NewCheckpointer(log *Log, logger *slog.Logger, o CheckpointOptions) *Checkpointer {
	if o.Interval <= 0 {
		o.Interval = DefaultCheckpointInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{log: log, logger: logger, o: o, stop: make(chan struct{}), done: make(chan struct{})}
}

// Start begins logging checkpoints every Interval in which records were
// committed.
func (c *Checkpointer) Start() {
	c.startOnce.Do(func() {
		go func() {
			defer close(c.done)
			t := time.NewTicker(c.o.Interval)
			defer t.Stop()
			for {
				select {
				case <-c.stop:
					return
				case <-t.C:
					c.checkpoint(context.Background(), false)
				}
			}
		}()
	})
}

// Stop ends the schedule and logs a final checkpoint. Call it once no more
// records will be written, before the Log is closed. Later calls do nothing.
func (c *Checkpointer) Stop() {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.startOnce.Do(func() { close(c.done) }) // never started
		<-c.done
		c.checkpoint(context.Background(), true)
	})
}

// Checkpoint logs a checkpoint of the log's head now and returns it.
func (c *Checkpointer) Checkpoint(ctx context.Context) (Checkpoint, error) {
	return c.take(ctx)
}

func (c *Checkpointer) checkpoint(ctx context.Context, always bool) {
	if !always {
		n, _, err := c.log.Head()
		c.mu.Lock()
		unchanged := err == nil && c.logged && n == c.last
		c.mu.Unlock()
		if unchanged {
			return
		}
	}
	if _, err := c.take(ctx); err != nil {
		c.logger.ErrorContext(ctx, "audit checkpoint failed", "err", err)
	}
}

func (c *Checkpointer) take(ctx context.Context) (Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, hash, err := c.log.Head()
	if err != nil {
		return Checkpoint{}, err
	}
	cp := Checkpoint{Count: n, Hash: hash, Time: c.o.Now().UTC()}
	var signErr error
	if c.o.Sign != nil {
		// An unsigned checkpoint still pins the file; --jwks will refuse it
		// and the error below says why it is unsigned.
		cp.Signature, signErr = c.o.Sign(cp.Payload())
	}
	rec := slog.NewRecord(cp.Time, slog.LevelInfo, CheckpointMsg, 0)
	rec.AddAttrs(slog.Int64("count", cp.Count), slog.String("hash", cp.Hash))
	if p := c.log.Path(); p != "" {
		rec.AddAttrs(slog.String("file", p))
	}
	if cp.Signature != "" {
		rec.AddAttrs(slog.String("signature", cp.Signature))
	}
	if err := c.logger.Handler().Handle(ctx, rec); err != nil {
		return Checkpoint{}, fmt.Errorf("log audit checkpoint: %w", err)
	}
	c.last, c.logged = n, true
	return cp, signErr
}
