// Package awssts mints AWS credentials for a grant: one sts:AssumeRole call
// with the role, duration, inline session policy, session name, source
// identity and session tags that the exchange decided on.
//
// Everything that comes from a token's claims (session name, source
// identity, tags) is sanitised here to what STS accepts, so a long or odd
// repository name shortens or changes a label but never fails a deploy.
// What STS itself refuses, and any network failure, comes back as an
// *UpstreamError whose text is safe to show and to log.
//
// Which AWS account and endpoint the broker talks to is the AWS SDK's own
// business: New loads the usual environment, shared config and credentials
// chain, so AWS_ENDPOINT_URL_STS pointed at a local STS (moto) works
// without code changes.
package awssts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/ferry-broker/ferry/internal/grant"
)

// Duration bounds of AssumeRole. Two AWS limits are lower than MaxDuration
// and checked only by STS, which refuses the call with a ValidationError
// (an *UpstreamError): the role's MaxSessionDuration (1h unless raised), and
// the 1h cap on role chaining, which applies whenever the broker itself runs
// as a role (instance profile, IRSA, task role).
const (
	MinDuration = 15 * time.Minute
	MaxDuration = 12 * time.Hour
)

// defaultRegion is used when the SDK finds none: STS is a global service and
// the SDK needs some region to pick an endpoint.
const defaultRegion = "us-east-1"

// Minter assumes IAM roles through STS, and denies a released session
// through IAM (release.go). It is safe for concurrent use.
type Minter struct {
	client *sts.Client
	iam    *iam.Client
}

// New loads AWS configuration the SDK's own way (config.LoadDefaultConfig:
// AWS_REGION, AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, the credentials chain
// of environment, shared files, web identity, ECS and EC2 roles) and returns
// a Minter using it. The region defaults to us-east-1 when none is set.
//
// Credentials are resolved lazily, on the first AssumeRole, so a broker with
// no AWS credentials starts and only its AWS grants fail.
//
// The STS client makes one attempt per call: the broker retries transient
// failures itself, once for every kind (grant.Retrying), and the SDK's own
// retryer (three attempts) would multiply its attempts into nine. The
// credential providers keep the SDK's retryer: their calls (IMDS, web
// identity) are the broker's own, not a pipeline's.
func New(ctx context.Context, optFns ...func(*config.LoadOptions) error) (*Minter, error) {
	cfg, err := config.LoadDefaultConfig(ctx, optFns...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = defaultRegion
	}
	return NewFromConfig(cfg, func(o *sts.Options) { o.RetryMaxAttempts = 1 }), nil
}

// NewFromConfig returns a Minter using cfg, with optFns applied to the STS
// client (e.g. to set BaseEndpoint or the retry policy). Its IAM client,
// for revoke_on_release, uses cfg as it is.
func NewFromConfig(cfg aws.Config, optFns ...func(*sts.Options)) *Minter {
	return &Minter{client: sts.NewFromConfig(cfg, optFns...), iam: iam.NewFromConfig(cfg)}
}

// Request is one role to assume and how.
type Request struct {
	// RoleARN is the role to assume, arn:PARTITION:iam::ACCOUNT:role/NAME.
	RoleARN string
	// Duration is the session lifetime, already clamped by the caller to the
	// policy's maximum. Under 15m is raised to 15m (STS's floor); over 12h is
	// refused.
	Duration time.Duration
	// SessionPolicy is an optional inline JSON policy, already rendered. It is
	// compacted before sending, since STS limits its length.
	SessionPolicy string
	// SessionName is raw text, sanitised by SanitizeSessionName. Required.
	SessionName string
	// SourceIdentity is raw text, sanitised by SanitizeSourceIdentity; empty
	// sends none. It persists through role chaining and shows in CloudTrail.
	SourceIdentity string
	// Tags are raw claim name/value pairs, sanitised by SanitizeTags.
	Tags []Tag
}

// Tag is one STS session tag.
type Tag struct {
	Key, Value string
}

// Credentials are AWS session credentials. String, GoString and LogValue
// show only the non-secret fields, so printing or logging a Credentials by
// mistake does not leak the secret key or session token.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	// Expiration is when STS says the credentials stop working.
	Expiration time.Time
	// RoleARN is the role assumed, as requested.
	RoleARN string
	// AssumedRoleARN is arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION as STS
	// reports it: the identity CloudTrail records.
	AssumedRoleARN string
	// SessionName and SourceIdentity are the sanitised values sent to STS
	// (SourceIdentity empty when none was sent), for the audit record.
	SessionName    string
	SourceIdentity string
}

// AssumeRole calls sts:AssumeRole for req, with sts:TagSession and
// sts:SetSourceIdentity implied when tags or a source identity are sent (the
// role's trust policy must allow them). An error is a *grant.BadGrantError
// when req is refused before any call (bad policy data, never the
// pipeline's fault), and an *UpstreamError when STS refuses or cannot be
// reached; ctx bounds the whole call, retries included.
func (m *Minter) AssumeRole(ctx context.Context, req Request) (*Credentials, error) {
	in, err := assumeRoleInput(req)
	if err != nil {
		return nil, err
	}
	out, err := m.client.AssumeRole(ctx, in)
	if err != nil {
		return nil, newUpstreamError("AssumeRole", err)
	}
	c := out.Credentials
	if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SecretAccessKey) == "" ||
		aws.ToString(c.SessionToken) == "" || c.Expiration == nil {
		return nil, &UpstreamError{Op: "AssumeRole", Message: "response carried no complete credentials"}
	}
	creds := &Credentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Expiration:      c.Expiration.UTC(),
		RoleARN:         req.RoleARN,
		SessionName:     aws.ToString(in.RoleSessionName),
		SourceIdentity:  aws.ToString(in.SourceIdentity),
	}
	if out.AssumedRoleUser != nil {
		creds.AssumedRoleARN = aws.ToString(out.AssumedRoleUser.Arn)
	}
	return creds, nil
}

func assumeRoleInput(req Request) (*sts.AssumeRoleInput, error) {
	if err := checkRoleARN(req.RoleARN); err != nil {
		return nil, err
	}
	if req.SessionName == "" {
		return nil, badGrant("session_name", "no session name")
	}
	d := max(req.Duration, MinDuration)
	if d > MaxDuration {
		return nil, badGrant("duration", fmt.Sprintf("%s is over STS's maximum of %s", req.Duration, MaxDuration))
	}
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(req.RoleARN),
		RoleSessionName: aws.String(SanitizeSessionName(req.SessionName)),
		DurationSeconds: aws.Int32(int32(d / time.Second)),
	}
	if req.SessionPolicy != "" {
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(req.SessionPolicy)); err != nil {
			return nil, badGrant("session_policy", fmt.Sprintf("not valid JSON: %v", err))
		}
		in.Policy = aws.String(buf.String())
	}
	if req.SourceIdentity != "" {
		in.SourceIdentity = aws.String(SanitizeSourceIdentity(req.SourceIdentity))
	}
	for _, t := range SanitizeTags(req.Tags) {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(t.Key), Value: aws.String(t.Value)})
	}
	return in, nil
}

// checkRoleARN refuses what cannot be a role before STS is asked, so a
// policy typo reads as such rather than as an AWS error.
func checkRoleARN(s string) error {
	if s == "" {
		return badGrant("role_arn", "no role ARN")
	}
	if !ValidRoleARN(s) {
		return badGrant("role_arn", fmt.Sprintf("%q is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", s))
	}
	return nil
}

func badGrant(field, reason string) *grant.BadGrantError {
	return &grant.BadGrantError{Kind: KindName, Field: field, Reason: reason}
}

// credentialProcessOutput is the JSON an AWS SDK or CLI expects from a
// credential_process command.
type credentialProcessOutput struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	SessionToken    string `json:"SessionToken"`
	Expiration      string `json:"Expiration"`
}

// CredentialProcessJSON renders c in the format of AWS's credential_process
// (Version 1, AccessKeyId, SecretAccessKey, SessionToken, Expiration as
// RFC 3339 UTC). Fractional seconds are dropped, which makes the stated
// expiry at most a second early, never late. Incomplete credentials are an
// error rather than output an SDK would treat as non-expiring.
func (c *Credentials) CredentialProcessJSON() ([]byte, error) {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.SessionToken == "" || c.Expiration.IsZero() {
		return nil, errors.New("credential_process output needs an access key id, secret key, session token and expiration")
	}
	return json.Marshal(credentialProcessOutput{
		Version:         1,
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		Expiration:      c.Expiration.UTC().Format(time.RFC3339),
	})
}

// String shows the non-secret fields only.
func (c Credentials) String() string {
	return fmt.Sprintf("AWS credentials %s for %s until %s", c.AccessKeyID, c.AssumedRoleARN, c.Expiration.Format(time.RFC3339))
}

// GoString keeps %#v from printing the secret fields.
func (c Credentials) GoString() string {
	return fmt.Sprintf("awssts.Credentials{AccessKeyID:%q, SecretAccessKey:REDACTED, SessionToken:REDACTED, Expiration:%s, AssumedRoleARN:%q}",
		c.AccessKeyID, c.Expiration.Format(time.RFC3339), c.AssumedRoleARN)
}

// LogValue logs the non-secret fields only.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_key_id", c.AccessKeyID),
		slog.Time("expiration", c.Expiration),
		slog.String("role_arn", c.RoleARN),
		slog.String("assumed_role_arn", c.AssumedRoleARN),
	)
}
