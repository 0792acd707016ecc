package client

import (
	"time"

	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

// Result is the broker's answer to an exchange, the contract's 200 body:
// exactly one credential, under its kind's name. It holds secrets.
type Result struct {
	Policy    string            `json:"policy"`
	RequestID string            `json:"request_id"`
	ExpiresAt time.Time         `json:"expires_at"`
	AWS       *awssts.Answer    `json:"aws,omitempty"`
	GCP       *gcpiam.Answer    `json:"gcp,omitempty"`
	Token     *tokensign.Answer `json:"token,omitempty"`
	GitHub    *ghapp.Answer     `json:"github,omitempty"`

	// ReleaseToken ends the credential early: `ferry release` (release.go).
	ReleaseToken string `json:"release_token,omitempty"`
}
