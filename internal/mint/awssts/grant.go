package awssts

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/claimtmpl"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// KindName is the aws grant's key in a policy and in an answer.
const KindName = "aws"

// Limits of an aws grant: STS's own, except the default, which is STS's
// floor, since a CI job should hold a credential no longer than it needs.
const (
	DefaultDuration = 15 * time.Minute
	// MaxSessionPolicy is STS's limit on a packed inline session policy.
	MaxSessionPolicy = 2048
	// MaxSessionTags is STS's limit on session tags.
	MaxSessionTags = maxTags
)

// roleARN is the one rule for a role ARN, at load and before every call.
var roleARN = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$`)

// ValidRoleARN reports whether s is an IAM role ARN STS can assume:
// arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME.
func ValidRoleARN(s string) bool { return roleARN.MatchString(s) }

// Kind is the aws grant kind: STS AssumeRole with an optional inline
// session policy and session tags.
type Kind struct{}

// Name implements grant.Kind.
func (Kind) Name() string { return KindName }

// Spec is a policy's aws grant.
type Spec struct {
	RoleARN  string
	Duration time.Duration
	// SessionPolicy is the compact JSON of the inline session policy, ""
	// if none; on a policy's own spec it holds the {{claim}} templates as
	// written, and Render fills them in.
	SessionPolicy string
	SessionTags   []string // claim names passed as STS session tags
	// RevokeOnRelease tags each session with its request id and, at
	// release, denies that session everything through an inline policy on
	// the role (release.go).
	RevokeOnRelease bool

	policy *claimtmpl.JSON // the session policy, when it holds templates
}

// Parse implements grant.Kind.
func (Kind) Parse(r *yamlpos.Reader, n *yaml.Node) grant.Spec {
	before := r.Count()
	f, _ := r.Fields(n, "grant.aws", "role_arn", "duration", "session_policy", "session_tags", "revoke_on_release")
	if f == nil {
		return nil
	}
	g := &Spec{}
	if v := f.Value("role_arn"); v == nil {
		r.Errorf(n, "grant.aws.role_arn is required")
	} else if s, ok := claimtmpl.Literal(r, v, "grant.aws.role_arn"); ok {
		g.RoleARN = s
		if !ValidRoleARN(s) {
			r.Errorf(v, "grant.aws.role_arn %q is not an IAM role ARN such as arn:aws:iam::123456789012:role/NAME", s)
		}
	}
	g.Duration = r.Duration(f.Value("duration"), "grant.aws.duration", MinDuration, MaxDuration, DefaultDuration)
	if v := f.Value("session_policy"); v != nil {
		if doc := readSessionPolicy(r, v); doc != nil {
			packed := doc.String()
			if len(packed) > MaxSessionPolicy {
				r.Errorf(v, "grant.aws.session_policy is %d characters packed, over STS's limit of %d", len(packed), MaxSessionPolicy)
			}
			// Policies of one shape carry the same session policy: the
			// load keeps one.
			s := r.Share("aws.session_policy\x00"+packed, &sessionPolicy{packed: packed, doc: doc}).(*sessionPolicy)
			g.SessionPolicy = s.packed
			if s.doc.HasTemplate() {
				g.policy = s.doc
			}
		}
	}
	if v := f.Value("session_tags"); v != nil {
		tags, _ := r.StrList(v, "grant.aws.session_tags")
		if len(tags) > MaxSessionTags {
			r.Errorf(v, "grant.aws.session_tags has %d tags; STS allows at most %d", len(tags), MaxSessionTags)
		}
		// Policies of one shape tag alike: the load keeps one list.
		g.SessionTags = r.Share("aws.session_tags\x00"+strings.Join(tags, "\x00"), tags).([]string)
		seen := map[string]bool{}
		for i, t := range tags {
			switch {
			case !claims.ValidName(t):
				r.Errorf(v.Content[i], "grant.aws.session_tags: %q is not a claim name", t)
			case seen[t]:
				r.Errorf(v.Content[i], "grant.aws.session_tags: %q is listed twice", t)
			}
			seen[t] = true
		}
	}
	if v := f.Value("revoke_on_release"); v != nil {
		g.RevokeOnRelease = readRevokeOnRelease(r, v, f.Value("session_tags"), g.SessionTags)
	}
	if r.Count() > before {
		return nil
	}
	return g
}

// sessionPolicy is a parsed session policy with its packed text.
type sessionPolicy struct {
	packed string
	doc    *claimtmpl.JSON
}

// readSessionPolicy reads the inline policy, written as a YAML mapping or a
// JSON string.
func readSessionPolicy(r *yamlpos.Reader, n *yaml.Node) *claimtmpl.JSON {
	const what = "grant.aws.session_policy"
	var doc *claimtmpl.JSON
	switch {
	case n.Kind == yaml.MappingNode:
		var ok bool
		if doc, ok = claimtmpl.ReadJSON(r, n, what); !ok {
			return nil
		}
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		var err error
		if doc, err = claimtmpl.ParseJSON(n.Value); err != nil {
			r.Errorf(n, "%s is not valid JSON: %v", what, err)
			return nil
		}
	default:
		r.Errorf(n, "%s must be a mapping (the policy written in YAML) or a JSON string", what)
		return nil
	}
	if !doc.IsObject() {
		r.Errorf(n, "%s must be a JSON object", what)
		return nil
	}
	if !doc.HasKey("Statement") {
		r.Errorf(n, "%s has no Statement", what)
		return nil
	}
	return doc
}

// Kind implements grant.Spec.
func (*Spec) Kind() string { return KindName }

// MaxDuration implements grant.Spec.
func (g *Spec) MaxDuration() time.Duration { return g.Duration }

// Render implements grant.Spec.
func (g *Spec) Render(c *claims.Set) (grant.Spec, error) {
	if g.policy == nil {
		return g, nil
	}
	const field = "aws.session_policy"
	policy, err := g.policy.Render(field, c)
	if err != nil {
		return nil, err
	}
	if len(policy) > MaxSessionPolicy {
		return nil, claimtmpl.FieldError(field, fmt.Sprintf("it would be %d characters once filled in, over STS's limit of %d", len(policy), MaxSessionPolicy))
	}
	out := *g
	out.SessionPolicy, out.policy = policy, nil
	return &out, nil
}

// Describe implements grant.Spec.
func (g *Spec) Describe() string {
	s := fmt.Sprintf("would assume AWS role %s for up to %s", g.RoleARN, yamlpos.FormatDuration(g.Duration))
	if g.SessionPolicy != "" {
		s += " with session policy " + g.SessionPolicy
	}
	if g.RevokeOnRelease {
		s += "; release at job end denies the session everything (revoke_on_release)"
	}
	return s
}

// Target implements grant.Spec.
func (g *Spec) Target() grant.Target {
	t := grant.Target{Credential: g.RoleARN}
	if g.SessionPolicy != "" {
		t.Narrowing = append(t.Narrowing, "session policy "+g.SessionPolicy)
	}
	if len(g.SessionTags) > 0 {
		t.Narrowing = append(t.Narrowing, "session tags "+strings.Join(g.SessionTags, ", "))
	}
	return t
}

// NewMinter implements grant.Kind: STS through the AWS SDK's own settings.
// Without AWS configuration the broker runs and refuses aws grants.
func (Kind) NewMinter(ctx context.Context, env grant.Env) (grant.Minter, error) {
	m, err := New(ctx)
	if err != nil {
		env.Logger.Warn("AWS minter unavailable; aws grants will be refused", "err", err)
		return nil, nil
	}
	return m, nil
}

// Answer is the contract's aws object of an exchange's answer. It holds
// secrets.
type Answer struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	SessionToken    string    `json:"session_token"`
	Expiration      time.Time `json:"expiration"`
	RoleARN         string    `json:"role_arn"`
	AssumedRoleARN  string    `json:"assumed_role_arn,omitempty"`
}

// Assumer assumes roles: the STS client (*Minter), or a test double.
type Assumer interface {
	AssumeRole(ctx context.Context, req Request) (*Credentials, error)
}

// GrantMinter mints aws grants through any Assumer, and releases them
// through IAM (nil: revoke_on_release grants cannot be released here).
type GrantMinter struct {
	STS Assumer
	IAM RolePolicies
}

// Mint implements grant.Minter.
func (m *Minter) Mint(ctx context.Context, req grant.Request) (*grant.Credential, error) {
	return GrantMinter{STS: m}.Mint(ctx, req)
}

// Mint implements grant.Minter.
func (m GrantMinter) Mint(ctx context.Context, req grant.Request) (*grant.Credential, error) {
	g := req.Spec.(*Spec)
	tags := make([]Tag, 0, len(g.SessionTags)+1)
	var state string
	if g.RevokeOnRelease {
		// First, so SanitizeTags keeps it whatever the claims are.
		t, st, err := releaseTag(g.RoleARN, req.RequestID)
		if err != nil {
			return nil, err
		}
		tags, state = append(tags, t), st
	}
	for _, name := range g.SessionTags {
		// A missing claim is left out rather than sent empty: a role whose
		// trust policy conditions on the tag then refuses, as it should.
		if v, ok := req.Claims.Get(name); ok {
			tags = append(tags, Tag{Key: name, Value: v.Text})
		}
	}
	creds, err := m.STS.AssumeRole(ctx, Request{
		RoleARN:        g.RoleARN,
		Duration:       req.Lifetime,
		SessionPolicy:  g.SessionPolicy,
		SessionName:    sessionName(req.Job.Who, req.Job.ID),
		SourceIdentity: req.Job.Who,
		Tags:           tags,
	})
	if err != nil {
		return nil, asGrantError(err)
	}
	return &grant.Credential{
		Answer: &Answer{
			AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken,
			Expiration: creds.Expiration, RoleARN: creds.RoleARN, AssumedRoleARN: creds.AssumedRoleARN,
		},
		ExpiresAt: creds.Expiration,
		ID:        creds.AccessKeyID,
		Release:   state,
	}, nil
}

// sessionName keeps the run id whole and shortens the repository, so a long
// name never cuts off the part that finds the run in CloudTrail.
func sessionName(who, run string) string {
	if run == "" {
		return who
	}
	room := maxSessionNameLen - len(run) - 1
	if room < 2 {
		return run
	}
	if len(who) > room {
		who = who[:room]
	}
	return who + "@" + run
}
