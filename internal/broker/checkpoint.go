package broker

import (
	"fmt"
	"log/slog"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

// startCheckpoints logs checkpoints of the audit log to the broker's log
// (see audit.Checkpointer), signed with the token signing key when one is
// configured, so `ferry audit verify --checkpoints LOG --jwks URL` checks
// them against the keys the broker publishes.
func startCheckpoints(log *audit.Log, logger *slog.Logger, c config.Token, dev *tokensign.Key) (*audit.Checkpointer, error) {
	var o audit.CheckpointOptions
	key := dev
	if c.SigningKey != "" {
		k, err := tokensign.LoadKeyFile(c.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("token.signing_key: %w", err)
		}
		key = k
	}
	if key != nil {
		sign, err := audit.JWSSigner(key.Signer, key.ID, string(key.Alg))
		if err != nil {
			return nil, fmt.Errorf("audit checkpoints: %w", err)
		}
		o.Sign = sign
	}
	cp := audit.NewCheckpointer(log, logger, o)
	cp.Start()
	return cp, nil
}
