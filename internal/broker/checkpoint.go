package broker

import (
	"crypto"
	"fmt"
	"log/slog"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/grant"
)

// keySigner is a grant kind's minter that signs with a key the broker
// publishes in its JWKS (the token kind's).
type keySigner interface {
	SigningKey() (key crypto.Signer, kid, alg string)
}

// startCheckpoints logs checkpoints of the audit log to the broker's log
// (see audit.Checkpointer), signed with the token signing key when one is
// configured, so `ferry audit verify --checkpoints LOG --jwks URL` checks
// them against the keys the broker publishes.
func startCheckpoints(log *audit.Log, logger *slog.Logger, minters map[string]grant.Minter) (*audit.Checkpointer, error) {
	var o audit.CheckpointOptions
	for _, m := range minters {
		if ks, ok := m.(keySigner); ok {
			sign, err := audit.JWSSigner(ks.SigningKey())
			if err != nil {
				return nil, fmt.Errorf("audit checkpoints: %w", err)
			}
			o.Sign = sign
		}
	}
	cp := audit.NewCheckpointer(log, logger, o)
	cp.Start()
	return cp, nil
}
