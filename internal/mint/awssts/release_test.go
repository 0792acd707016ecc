package awssts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
	"github.com/ferry-broker/ferry/internal/testsupport/moto"
)

func TestRevokeOnReleaseIsParsed(t *testing.T) {
	const arn = "role_arn: arn:aws:iam::123456789012:role/x\n"
	tags := func(n int) string {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("c%d", i)
		}
		return "session_tags: [" + strings.Join(names, ", ") + "]\n"
	}
	granttest.Check(t, awssts.Kind{}, map[string][2]string{
		"on":                          {arn + "revoke_on_release: true\n", ""},
		"off":                         {arn + "revoke_on_release: false\n", ""},
		"a string":                    {arn + "revoke_on_release: \"true\"\n", "p.yaml:2:20: grant.aws.revoke_on_release must be true or false"},
		"yes is not a YAML 1.2 bool":  {arn + "revoke_on_release: yes\n", "p.yaml:2:20: grant.aws.revoke_on_release must be true or false"},
		"a list":                      {arn + "revoke_on_release: [true]\n", "p.yaml:2:20: grant.aws.revoke_on_release must be true or false"},
		"49 tags leave room for ours": {arn + "revoke_on_release: true\n" + tags(49), ""},
		"50 tags and ours are 51":     {arn + "revoke_on_release: true\n" + tags(50), "p.yaml:3:15: grant.aws.session_tags has 50 tags; with revoke_on_release Ferry adds ferry-request-id, and STS allows at most 50"},
		"50 tags without it are fine": {arn + tags(50), ""},
		"a claim of the tag's own name": {arn + "revoke_on_release: true\nsession_tags: [ref, Ferry-Request-Id]\n",
			`p.yaml:3:21: grant.aws.session_tags: "Ferry-Request-Id" is the tag revoke_on_release sets itself`},
	})
	on := granttest.MustParse(t, awssts.Kind{}, arn+"revoke_on_release: true\n").(*awssts.Spec)
	off := granttest.MustParse(t, awssts.Kind{}, arn).(*awssts.Spec)
	if !on.RevokeOnRelease || off.RevokeOnRelease {
		t.Errorf("RevokeOnRelease on = %v, off = %v", on.RevokeOnRelease, off.RevokeOnRelease)
	}
	if !strings.Contains(on.Describe(), "revoke_on_release") || strings.Contains(off.Describe(), "revoke_on_release") {
		t.Errorf("Describe: %q / %q", on.Describe(), off.Describe())
	}
}

func TestRevokeOnReleaseTagsTheSessionWithTheRequest(t *testing.T) {
	for _, tt := range []struct {
		name      string
		yaml      string
		wantTags  []awssts.Tag
		wantState bool
	}{
		{"revoke_on_release tags the session first", "revoke_on_release: true\nsession_tags: [repository]\n",
			[]awssts.Tag{{Key: "ferry-request-id", Value: "01JREQUEST"}, {Key: "repository", Value: "acme/app"}}, true},
		{"without it nothing is tagged for release", "session_tags: [repository]\n",
			[]awssts.Tag{{Key: "repository", Value: "acme/app"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := granttest.MustParse(t, awssts.Kind{}, "role_arn: arn:aws:iam::123456789012:role/ci/deploy\n"+tt.yaml)
			var got awssts.Request
			sts := assumerFunc(func(_ context.Context, req awssts.Request) (*awssts.Credentials, error) {
				got = req
				return &awssts.Credentials{AccessKeyID: "ASIAX", SecretAccessKey: "s", SessionToken: "t", Expiration: time.Now().Add(time.Hour), RoleARN: req.RoleARN}, nil
			})
			cred, err := awssts.GrantMinter{STS: sts}.Mint(context.Background(), grant.Request{Spec: spec, Lifetime: time.Hour,
				Claims: granttest.Claims(t, "github-push-main", nil), Job: platform.Job{Who: "acme/app"}, RequestID: "01JREQUEST"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Tags, tt.wantTags) {
				t.Errorf("tags = %v, want %v", got.Tags, tt.wantTags)
			}
			if tt.wantState != (cred.Release != "") {
				t.Fatalf("Release state = %q", cred.Release)
			}
			if tt.wantState && cred.Release != `{"role_arn":"arn:aws:iam::123456789012:role/ci/deploy","session":"01JREQUEST"}` {
				t.Errorf("Release state = %s", cred.Release)
			}
		})
	}
	// Without a request id there is nothing to tag: refused, not minted
	// unreleasable.
	spec := granttest.MustParse(t, awssts.Kind{}, "role_arn: arn:aws:iam::123456789012:role/x\nrevoke_on_release: true\n")
	_, err := awssts.GrantMinter{STS: assumerFunc(func(context.Context, awssts.Request) (*awssts.Credentials, error) {
		t.Fatal("STS called without a request id")
		return nil, nil
	})}.Mint(context.Background(), grant.Request{Spec: spec, Lifetime: time.Hour, Claims: granttest.Claims(t, "github-push-main", nil)})
	var bad *grant.BadGrantError
	if !errors.As(err, &bad) {
		t.Errorf("err = %v, want a *grant.BadGrantError", err)
	}
}

// oneLock is grant.Shared with a process-local lock: the seam's contract,
// without the replay store behind it (tested in exchange).
type oneLock struct {
	mu    sync.Mutex
	names []string
}

func (l *oneLock) Revoke(context.Context, string, time.Time) error { return errors.New("not used") }
func (l *oneLock) Revoked(context.Context, string) (bool, error) {
	return false, errors.New("not used")
}
func (l *oneLock) Lock(_ context.Context, name string, _ time.Duration) (func(), error) {
	l.mu.Lock()
	l.names = append(l.names, name)
	return l.mu.Unlock, nil
}

// releaseFixture is moto with one role, and a minter that assumes and
// releases it.
type releaseFixture struct {
	t      *testing.T
	iam    *iam.Client
	minter *awssts.Minter
	spec   grant.Spec
	shared *oneLock
}

const releaseRole = "arn:aws:iam::" + moto.AccountID + ":role/ci/deploy-prod"

func newReleaseFixture(t *testing.T) *releaseFixture {
	t.Helper()
	server := moto.Start(t)
	cfg := server.AWSConfig()
	f := &releaseFixture{t: t, iam: iam.NewFromConfig(cfg), minter: awssts.NewFromConfig(cfg), shared: &oneLock{}}
	_, err := f.iam.CreateRole(context.Background(), &iam.CreateRoleInput{
		RoleName: aws.String("deploy-prod"), Path: aws.String("/ci/"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`),
	})
	if err != nil {
		t.Fatalf("create role at moto: %v", err)
	}
	f.spec = granttest.MustParse(t, awssts.Kind{}, "role_arn: "+releaseRole+"\nrevoke_on_release: true\n")
	return f
}

// mint assumes the role at moto for a request.
func (f *releaseFixture) mint(requestID string, lifetime time.Duration) *grant.Credential {
	f.t.Helper()
	cred, err := f.minter.Mint(context.Background(), grant.Request{Spec: f.spec, Lifetime: lifetime, RequestID: requestID,
		Claims: granttest.Claims(f.t, "github-push-main", nil), Job: platform.Job{Who: "acme/app", ID: "1"}})
	if err != nil {
		f.t.Fatalf("mint at moto: %v", err)
	}
	return cred
}

func (f *releaseFixture) release(cred *grant.Credential, now time.Time) (grant.Released, error) {
	return f.minter.Release(context.Background(), grant.ReleaseRequest{Policy: "deploy-prod", State: cred.Release,
		ExpiresAt: cred.ExpiresAt, Now: now, Shared: f.shared})
}

// policy is the role's release policy as moto holds it.
type policyDoc struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    any
		Resource  any
		Condition map[string]map[string][]string
	}
}

func (f *releaseFixture) policy() policyDoc {
	f.t.Helper()
	out, err := f.iam.GetRolePolicy(context.Background(), &iam.GetRolePolicyInput{RoleName: aws.String("deploy-prod"), PolicyName: aws.String(awssts.ReleasePolicyName)})
	if err != nil {
		f.t.Fatalf("GetRolePolicy: %v", err)
	}
	text := aws.ToString(out.PolicyDocument)
	if !strings.HasPrefix(text, "{") {
		text, _ = url.PathUnescape(text)
	}
	var d policyDoc
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		f.t.Fatalf("policy %s: %v", text, err)
	}
	return d
}

func (d policyDoc) denied() map[string][]string {
	out := map[string][]string{}
	for _, s := range d.Statement {
		if strings.HasPrefix(s.Sid, "FerryReleasedUntil") {
			out[s.Sid] = s.Condition["StringEquals"]["aws:PrincipalTag/ferry-request-id"]
		}
	}
	return out
}

func TestReleaseDeniesTheSessionOnTheRoleAtMoto(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	now := time.Now()
	a := f.mint("01JAAAAAAAAAAAAAAAAAAAAAAA", time.Hour)
	b := f.mint("01JBBBBBBBBBBBBBBBBBBBBBBB", time.Hour)

	r, err := f.release(a, now)
	if err != nil || !r.Revoked || !strings.Contains(r.Detail, "ferry-request-id=01JAAAAAAAAAAAAAAAAAAAAAAA") {
		t.Fatalf("Release = %+v, %v", r, err)
	}
	d := f.policy()
	if len(d.Statement) != 1 {
		t.Fatalf("policy = %+v", d)
	}
	s := d.Statement[0]
	hour := a.ExpiresAt.UTC().Truncate(time.Hour).Add(time.Hour)
	if s.Effect != "Deny" || s.Action != "*" || s.Resource != "*" || s.Sid != "FerryReleasedUntil"+hour.Format("20060102T15") ||
		!slices.Equal(s.Condition["StringEquals"]["aws:PrincipalTag/ferry-request-id"], []string{"01JAAAAAAAAAAAAAAAAAAAAAAA"}) {
		t.Errorf("statement = %+v", s)
	}

	// A second session expiring in the same hour joins the statement; the
	// first's release again adds nothing.
	if _, err := f.release(b, now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.release(a, now); err != nil {
		t.Fatal(err)
	}
	denied := f.policy().denied()
	if len(denied) != 1 || !slices.Equal(denied["FerryReleasedUntil"+hour.Format("20060102T15")], []string{"01JAAAAAAAAAAAAAAAAAAAAAAA", "01JBBBBBBBBBBBBBBBBBBBBBBB"}) {
		t.Errorf("denied = %v", denied)
	}
	if len(f.shared.names) != 3 || f.shared.names[0] != releaseRole {
		t.Errorf("locks taken = %v, want the role's, once a release", f.shared.names)
	}
}

func TestReleasePrunesPassedHoursAndKeepsOtherStatements(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	ctx := context.Background()
	// Someone else's statement in the same policy survives every release.
	foreign := `{"Version":"2012-10-17","Statement":[{"Sid":"KeepMe","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]}`
	if _, err := f.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("deploy-prod"),
		PolicyName: aws.String(awssts.ReleasePolicyName), PolicyDocument: aws.String(foreign)}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	short := f.mint("01JSHORT00000000000000000A", 15*time.Minute)
	long := f.mint("01JLONG000000000000000000B", 3*time.Hour)
	if _, err := f.release(short, now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.release(long, now); err != nil {
		t.Fatal(err)
	}
	if denied := f.policy().denied(); len(denied) != 2 {
		t.Fatalf("denied = %v, want two hours", denied)
	}

	// Past the short session's hour, the next release drops it.
	later := f.mint("01JLATER00000000000000000C", 2*time.Hour)
	if _, err := f.release(later, now.Add(90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	d := f.policy()
	for sid, ids := range d.denied() {
		if slices.Contains(ids, "01JSHORT00000000000000000A") {
			t.Errorf("the expired session is still denied in %s", sid)
		}
	}
	var all []string
	for _, ids := range d.denied() {
		all = append(all, ids...)
	}
	if !slices.Contains(all, "01JLONG000000000000000000B") || !slices.Contains(all, "01JLATER00000000000000000C") {
		t.Errorf("denied = %v, want the long and later sessions", d.denied())
	}
	if d.Statement[0].Sid != "KeepMe" {
		t.Errorf("the foreign statement was lost: %+v", d.Statement)
	}
}

func TestReleaseFailuresSayWhatIAMSaid(t *testing.T) {
	t.Parallel()
	f := newReleaseFixture(t)
	now := time.Now()

	// A role IAM does not know: its NoSuchEntity, as a 502.
	other := granttest.MustParse(t, awssts.Kind{}, "role_arn: arn:aws:iam::"+moto.AccountID+":role/missing\nrevoke_on_release: true\n")
	cred, err := f.minter.Mint(context.Background(), grant.Request{Spec: other, Lifetime: time.Hour, RequestID: "01JMISSING",
		Claims: granttest.Claims(t, "github-push-main", nil), Job: platform.Job{Who: "acme/app"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.release(cred, now)
	var up *grant.UpstreamError
	if !errors.As(err, &up) || up.Provider != "AWS IAM PutRolePolicy" || up.Code != "NoSuchEntity" {
		t.Fatalf("release on a missing role: %#v", err)
	}

	// A policy that would pass IAM's size limit is refused before it is put,
	// and the sessions already denied stay denied.
	id := func(i int) string { return fmt.Sprintf("01J%023d", i) }
	a := f.mint(id(0), time.Hour)
	if _, err := f.release(a, now); err != nil {
		t.Fatal(err)
	}
	hour := "FerryReleasedUntil" + a.ExpiresAt.UTC().Truncate(time.Hour).Add(time.Hour).Format("20060102T15")
	var ids []string
	doc := ""
	for i := 1; ; i++ {
		next := append(slices.Clone(ids), id(i))
		b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
			"Sid": hour, "Effect": "Deny", "Action": "*", "Resource": "*",
			"Condition": map[string]any{"StringEquals": map[string]any{"aws:PrincipalTag/ferry-request-id": next}}}}})
		if len(b) > awssts.MaxRolePolicySize {
			break // the policy before this one is as full as it gets
		}
		ids, doc = next, string(b)
	}
	if _, err := f.iam.PutRolePolicy(context.Background(), &iam.PutRolePolicyInput{RoleName: aws.String("deploy-prod"),
		PolicyName: aws.String(awssts.ReleasePolicyName), PolicyDocument: aws.String(doc)}); err != nil {
		t.Fatal(err)
	}
	_, err = f.release(f.mint("01JONETOOMANY0000000000000", time.Hour), now)
	if !errors.As(err, &up) || up.Code != "LimitExceeded" || !strings.Contains(up.Message, "10240") {
		t.Fatalf("release past the size limit: %v", err)
	}
	if got := f.policy().denied()[hour]; len(got) != len(ids) {
		t.Errorf("after the refused release %d sessions are denied, want the %d before it", len(got), len(ids))
	}

	// An expired session needs no deny and no IAM call.
	r, err := awssts.GrantMinter{}.Release(context.Background(), grant.ReleaseRequest{State: a.Release, ExpiresAt: now.Add(-time.Second), Now: now})
	if err != nil || r.Revoked {
		t.Errorf("release of an expired session = %+v, %v", r, err)
	}
	// A broker without IAM cannot deny: unavailable, not a silent success.
	_, err = awssts.GrantMinter{}.Release(context.Background(), grant.ReleaseRequest{State: a.Release, ExpiresAt: a.ExpiresAt, Now: now, Shared: f.shared})
	var un *grant.UnavailableError
	if !errors.As(err, &un) {
		t.Errorf("release without IAM: %v", err)
	}
}
