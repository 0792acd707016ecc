package awssts

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// Release at job end for aws grants with revoke_on_release: true.
//
// AWS cannot revoke one session's credentials, but a role's own policies
// apply to every session of it, and a Deny wins over any Allow. So each
// such session is tagged at AssumeRole with a value unique to it (the
// exchange's request id, as session tag RequestTagKey), and release adds
// that value to a Deny of every action on the role's inline policy
// ReleasePolicyName, conditioned on aws:PrincipalTag/ferry-request-id. The
// policy groups released sessions by the hour their credentials expire in,
// one statement an hour, and drops an hour's statement once it has passed:
// nothing it denied can be used any more. This is the mechanism of the AWS
// console's "revoke active sessions", narrowed from every session issued
// before a time to one session.
const (
	// RequestTagKey is the session tag that names the grant's request.
	RequestTagKey = "ferry-request-id"
	// ReleasePolicyName is the role's inline policy holding the denies.
	ReleasePolicyName = "ferry-released-sessions"
	// MaxRolePolicySize is IAM's limit on a role's inline policies, all
	// of them together, counted without whitespace.
	MaxRolePolicySize = 10240
	// releaseSid begins the Sid of each hour's statement, followed by the
	// hour it ends (UTC, "20061102T15").
	releaseSid = "FerryReleasedUntil"
	sidHour    = "20060102T15"
	// lockTTL bounds how long one release may hold the role's lock.
	lockTTL = 30 * time.Second
)

// requestID is what the session tag may carry: the exchange's ULID, or
// any other short id of safe characters.
var requestID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// releaseState is an aws credential's grant.Credential.Release: what the
// release needs to find the session again. Not a secret.
type releaseState struct {
	RoleARN string `json:"role_arn"`
	Session string `json:"session"`
}

// readRevokeOnRelease reads revoke_on_release, checking that the session
// tag it adds fits beside the policy's own.
func readRevokeOnRelease(r *yamlpos.Reader, v, tagsNode *yaml.Node, tags []string) bool {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
		r.Errorf(v, "grant.aws.revoke_on_release must be true or false")
		return false
	}
	on := v.Value == "true"
	if !on {
		return false
	}
	if len(tags) >= MaxSessionTags && tagsNode != nil {
		r.Errorf(tagsNode, "grant.aws.session_tags has %d tags; with revoke_on_release Ferry adds %s, and STS allows at most %d", len(tags), RequestTagKey, MaxSessionTags)
	}
	for i, t := range tags {
		if strings.EqualFold(t, RequestTagKey) && tagsNode != nil && i < len(tagsNode.Content) {
			r.Errorf(tagsNode.Content[i], "grant.aws.session_tags: %q is the tag revoke_on_release sets itself", t)
		}
	}
	return true
}

// releaseTag is the session tag and release state of one grant.
func releaseTag(roleARN, reqID string) (Tag, string, error) {
	if !requestID.MatchString(reqID) {
		return Tag{}, "", badGrant("revoke_on_release", "no request id to tag the session with")
	}
	state, err := json.Marshal(releaseState{RoleARN: roleARN, Session: reqID})
	if err != nil {
		return Tag{}, "", fmt.Errorf("encode release state: %w", err)
	}
	return Tag{Key: RequestTagKey, Value: reqID}, string(state), nil
}

// RolePolicies reads and writes a role's inline policies: the IAM client,
// or a test double.
type RolePolicies interface {
	GetRolePolicy(ctx context.Context, in *iam.GetRolePolicyInput, optFns ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error)
	PutRolePolicy(ctx context.Context, in *iam.PutRolePolicyInput, optFns ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error)
}

// Release implements grant.Releaser.
func (m *Minter) Release(ctx context.Context, req grant.ReleaseRequest) (grant.Released, error) {
	return GrantMinter{STS: m, IAM: m.iam}.Release(ctx, req)
}

// Release implements grant.Releaser: it adds the session to the role's
// deny, under a lock shared by every replica so that two releases on one
// role never overwrite each other's read-modify-write.
func (m GrantMinter) Release(ctx context.Context, req grant.ReleaseRequest) (grant.Released, error) {
	var st releaseState
	if err := json.Unmarshal([]byte(req.State), &st); err != nil || !ValidRoleARN(st.RoleARN) || !requestID.MatchString(st.Session) {
		return grant.Released{}, fmt.Errorf("aws release: unreadable release state %q", req.State)
	}
	exp := req.ExpiresAt.UTC().Format(time.RFC3339)
	if !req.ExpiresAt.After(req.Now) {
		return grant.Released{Detail: "the session expired at " + exp + "; nothing to deny"}, nil
	}
	if m.IAM == nil || req.Shared == nil {
		return grant.Released{}, &grant.UnavailableError{RetryAfter: time.Minute,
			Reason: "this broker has no IAM client to deny the session; the credential was not released"}
	}
	unlock, err := req.Shared.Lock(ctx, st.RoleARN, lockTTL)
	if err != nil {
		return grant.Released{}, &grant.UnavailableError{RetryAfter: 5 * time.Second,
			Reason: "another release on the same role is still under way; try again", Err: err}
	}
	defer unlock()

	role := roleName(st.RoleARN)
	doc, err := m.denyPolicy(ctx, role)
	if err != nil {
		return grant.Released{}, err
	}
	doc.prune(req.Now)
	doc.add(st.Session, req.ExpiresAt)
	text, err := doc.marshal()
	if err != nil {
		return grant.Released{}, fmt.Errorf("aws release: encode %s: %w", ReleasePolicyName, err)
	}
	if len(text) > MaxRolePolicySize {
		return grant.Released{}, &grant.UpstreamError{Provider: "AWS IAM", Code: "LimitExceeded",
			Message: fmt.Sprintf("role %s's %s policy would be %d characters, over IAM's limit of %d for a role's inline policies; the session was not denied", role, ReleasePolicyName, len(text), MaxRolePolicySize)}
	}
	if _, err := m.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: aws.String(role), PolicyName: aws.String(ReleasePolicyName), PolicyDocument: aws.String(text),
	}); err != nil {
		return grant.Released{}, iamError("PutRolePolicy", err)
	}
	return grant.Released{Revoked: true, Detail: fmt.Sprintf(
		"role %s denies every action to the session tagged %s=%s (inline policy %s) until it expires at %s; IAM applies it within seconds",
		role, RequestTagKey, st.Session, ReleasePolicyName, exp)}, nil
}

// denyPolicy reads the role's release policy; a role without one has an
// empty one.
func (m GrantMinter) denyPolicy(ctx context.Context, role string) (*releasePolicy, error) {
	out, err := m.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(ReleasePolicyName)})
	var missing *iamtypes.NoSuchEntityException
	switch {
	case errors.As(err, &missing):
		return &releasePolicy{Version: "2012-10-17"}, nil
	case err != nil:
		return nil, iamError("GetRolePolicy", err)
	}
	return parseReleasePolicy(aws.ToString(out.PolicyDocument))
}

// iamError is an IAM failure as the grant seam's error.
func iamError(op string, err error) error {
	out := asGrantError(newUpstreamError(op, err))
	var ue *grant.UpstreamError
	if errors.As(out, &ue) {
		ue.Provider = "AWS IAM " + op
	}
	return out
}

// roleName is the role's name, as IAM's API takes it: the ARN's last path
// segment.
func roleName(arn string) string {
	return arn[strings.LastIndex(arn, "/")+1:]
}

// releasePolicy is the role's inline deny policy. Statements Ferry did not
// write are kept as they are.
type releasePolicy struct {
	Version   string
	Statement []json.RawMessage
	hours     []*hourDeny // Ferry's statements, parsed
}

// hourDeny denies the sessions whose credentials expire by until.
type hourDeny struct {
	until    time.Time
	sessions []string
}

type denyStatement struct {
	Sid       string                         `json:"Sid"`
	Effect    string                         `json:"Effect"`
	Action    string                         `json:"Action"`
	Resource  string                         `json:"Resource"`
	Condition map[string]map[string][]string `json:"Condition"`
}

const principalTag = "aws:PrincipalTag/" + RequestTagKey

// parseReleasePolicy reads a policy as GetRolePolicy returns it
// (URL-encoded, RFC 3986, by IAM; plain by some look-alikes).
func parseReleasePolicy(text string) (*releasePolicy, error) {
	if !strings.HasPrefix(strings.TrimSpace(text), "{") {
		decoded, err := url.PathUnescape(text)
		if err != nil {
			return nil, fmt.Errorf("aws release: %s is not URL-encoded JSON: %w", ReleasePolicyName, err)
		}
		text = decoded
	}
	var raw struct {
		Version   string
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("aws release: %s is not a policy: %w", ReleasePolicyName, err)
	}
	p := &releasePolicy{Version: cmp.Or(raw.Version, "2012-10-17")}
	var stmts []json.RawMessage
	if len(raw.Statement) > 0 && raw.Statement[0] == '{' {
		stmts = []json.RawMessage{raw.Statement} // a lone statement, as IAM allows
	} else if len(raw.Statement) > 0 {
		if err := json.Unmarshal(raw.Statement, &stmts); err != nil {
			return nil, fmt.Errorf("aws release: %s has an unreadable Statement: %w", ReleasePolicyName, err)
		}
	}
	for _, s := range stmts {
		if h := parseHourDeny(s); h != nil {
			p.hours = append(p.hours, h)
		} else {
			p.Statement = append(p.Statement, s)
		}
	}
	return p, nil
}

// parseHourDeny reads a statement Ferry wrote; nil for any other.
func parseHourDeny(s json.RawMessage) *hourDeny {
	var d denyStatement
	if json.Unmarshal(s, &d) != nil || !strings.HasPrefix(d.Sid, releaseSid) || d.Effect != "Deny" {
		return nil
	}
	until, err := time.Parse(sidHour, strings.TrimPrefix(d.Sid, releaseSid))
	if err != nil {
		return nil
	}
	ids := d.Condition["StringEquals"][principalTag]
	if len(ids) == 0 {
		return nil
	}
	return &hourDeny{until: until, sessions: ids}
}

// prune drops the hours that have passed: every session they deny has
// expired.
func (p *releasePolicy) prune(now time.Time) {
	p.hours = slices.DeleteFunc(p.hours, func(h *hourDeny) bool { return !h.until.After(now) })
}

// add denies session, whose credentials expire at expires.
func (p *releasePolicy) add(session string, expires time.Time) {
	until := expires.UTC().Truncate(time.Hour)
	if until.Before(expires) {
		until = until.Add(time.Hour)
	}
	for _, h := range p.hours {
		if h.until.Equal(until) {
			if !slices.Contains(h.sessions, session) {
				h.sessions = append(h.sessions, session)
			}
			return
		}
	}
	p.hours = append(p.hours, &hourDeny{until: until, sessions: []string{session}})
	slices.SortFunc(p.hours, func(a, b *hourDeny) int { return a.until.Compare(b.until) })
}

// marshal writes the policy compactly, Ferry's hours after the statements
// it keeps as found.
func (p *releasePolicy) marshal() (string, error) {
	stmts := slices.Clone(p.Statement)
	for _, h := range p.hours {
		b, err := json.Marshal(denyStatement{
			Sid: releaseSid + h.until.Format(sidHour), Effect: "Deny", Action: "*", Resource: "*",
			Condition: map[string]map[string][]string{"StringEquals": {principalTag: h.sessions}},
		})
		if err != nil {
			return "", err
		}
		stmts = append(stmts, b)
	}
	if stmts == nil {
		stmts = []json.RawMessage{}
	}
	b, err := json.Marshal(struct {
		Version   string
		Statement []json.RawMessage
	}{p.Version, stmts})
	return string(b), err
}
