package awssts_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/claimtmpl"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
)

func TestAWSGrantIsDecodedWithDefaults(t *testing.T) {
	g := granttest.MustParse(t, awssts.Kind{}, `
role_arn: arn:aws-us-gov:iam::123456789012:role/path/deploy
session_policy: '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/<x>&"}]}'
session_tags: [repository, ref]
`).(*awssts.Spec)
	want := awssts.Spec{
		RoleARN:       "arn:aws-us-gov:iam::123456789012:role/path/deploy",
		Duration:      15 * time.Minute,
		SessionPolicy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/<x>&"}]}`,
		SessionTags:   []string{"repository", "ref"},
	}
	if !reflect.DeepEqual(*g, want) || g.Kind() != "aws" || g.MaxDuration() != 15*time.Minute {
		t.Errorf("aws grant = %+v", *g)
	}

	// A policy in YAML: an unquoted date stays the string IAM wants;
	// numbers and booleans stay JSON numbers and booleans.
	y := granttest.MustParse(t, awssts.Kind{}, `
role_arn: arn:aws:iam::123456789012:role/deploy
duration: 1h
session_policy:
  Version: 2012-10-17
  Statement:
    - {Effect: Allow, Action: "s3:*", Resource: "*", Condition: {NumericLessThan: {"s3:max-keys": 10}, Bool: {"aws:SecureTransport": true}}}
`).(*awssts.Spec)
	if want := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"NumericLessThan":{"s3:max-keys":10},"Bool":{"aws:SecureTransport":true}}}]}`; y.SessionPolicy != want || y.MaxDuration() != time.Hour {
		t.Errorf("session policy from YAML = %s", y.SessionPolicy)
	}
}

func TestAWSGrantLimitsAreSTSOwn(t *testing.T) {
	const arn = "role_arn: arn:aws:iam::123456789012:role/x\n"
	tags := func(n int) string {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("c%d", i)
		}
		return "session_tags: [" + strings.Join(names, ", ") + "]\n"
	}
	granttest.Check(t, awssts.Kind{}, map[string][2]string{
		"the shortest session STS allows":            {arn + "duration: 15m\n", ""},
		"under STS's 15m floor":                      {arn + "duration: 14m\n", "p.yaml:2:11: grant.aws.duration 14m is out of range: allowed 15m..12h"},
		"the longest session STS allows":             {arn + "duration: 12h\n", ""},
		"over STS's 12h ceiling":                     {arn + "duration: 12h1m\n", "p.yaml:2:11: grant.aws.duration 12h1m is out of range: allowed 15m..12h"},
		"50 session tags":                            {arn + tags(50), ""},
		"51 session tags":                            {arn + tags(51), "p.yaml:2:15: grant.aws.session_tags has 51 tags; STS allows at most 50"},
		"a session policy of 2048 packed characters": {arn + `session_policy: '{"Statement":"` + strings.Repeat("x", 2048-len(`{"Statement":""}`)) + `"}'` + "\n", ""},
		"a session policy of 2049 packed characters": {arn + `session_policy: '{"Statement":"` + strings.Repeat("x", 2049-len(`{"Statement":""}`)) + `"}'` + "\n",
			"p.yaml:2:17: grant.aws.session_policy is 2049 characters packed, over STS's limit of 2048"},
		"a role ARN in another partition": {"role_arn: arn:aws-cn:iam::123456789012:role/x\n", ""},
		"a role ARN with a short account": {"role_arn: arn:aws:iam::1234:role/x\n",
			`p.yaml:1:11: grant.aws.role_arn "arn:aws:iam::1234:role/x" is not an IAM role ARN such as arn:aws:iam::123456789012:role/NAME`},
		"a session tag that is not a claim name": {arn + "session_tags: [\"a b\"]\n", `p.yaml:2:16: grant.aws.session_tags: "a b" is not a claim name`},
		"a session tag twice":                    {arn + "session_tags: [ref, ref]\n", `p.yaml:2:21: grant.aws.session_tags: "ref" is listed twice`},
		"a session policy without a Statement":   {arn + "session_policy: {Version: x}\n", "p.yaml:2:17: grant.aws.session_policy has no Statement"},
		"a session policy that is a list":        {arn + "session_policy: '[1]'\n", "p.yaml:2:17: grant.aws.session_policy must be a JSON object"},
		"a duplicate key in a JSON session policy": {arn + `session_policy: '{"Statement":1,"Statement":2}'` + "\n",
			`p.yaml:2:17: grant.aws.session_policy is not valid JSON: key "Statement" appears twice`},
		"no role": {"duration: 1h\n", "p.yaml:1:1: grant.aws.role_arn is required"},
	})
}

func TestAWSGrantRenderStaysWithinSTSLimit(t *testing.T) {
	// 12 templates of up to 256 characters each cannot fit in 2048.
	res := strings.TrimSuffix(strings.Repeat(`"arn:aws:s3:::b/{{repository}}",`, 12), ",")
	spec := granttest.MustParse(t, awssts.Kind{}, "role_arn: arn:aws:iam::123456789012:role/x\n"+
		`session_policy: '{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":[`+res+`]}]}'`+"\n")
	if _, err := spec.Render(granttest.Claims(t, "github-push-main", nil)); err != nil {
		t.Fatalf("short values: %v", err)
	}
	_, err := spec.Render(granttest.Claims(t, "github-push-main", map[string]any{"repository": "acme/" + strings.Repeat("a", 200)}))
	var te *claimtmpl.Error
	if !errors.As(err, &te) || te.Field != "aws.session_policy" || !strings.Contains(te.Reason, "over STS's limit of 2048") {
		t.Errorf("err = %v", err)
	}
}

func TestAWSGrantMintsThroughTheAssumer(t *testing.T) {
	spec := granttest.MustParse(t, awssts.Kind{}, "role_arn: arn:aws:iam::123456789012:role/x\nsession_tags: [repository, missing]\n")
	var got awssts.Request
	sts := assumerFunc(func(_ context.Context, req awssts.Request) (*awssts.Credentials, error) {
		got = req
		return &awssts.Credentials{AccessKeyID: "ASIAX", SecretAccessKey: "s", SessionToken: "t", Expiration: time.Unix(100, 0).UTC(), RoleARN: req.RoleARN}, nil
	})
	c := granttest.Claims(t, "github-push-main", nil)
	cred, err := awssts.GrantMinter{STS: sts}.Mint(context.Background(), grant.Request{
		Policy: "p", Spec: spec, Lifetime: time.Hour, Claims: c,
		Job: platform.Job{Who: strings.Repeat("r", 70), ID: "11223344556"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if a := cred.Answer.(*awssts.Answer); a.AccessKeyID != "ASIAX" || cred.ID != "ASIAX" || !cred.ExpiresAt.Equal(time.Unix(100, 0)) || cred.Bearer != nil {
		t.Errorf("credential = %+v", cred)
	}
	// The run id survives a long repository name; a missing claim sends no tag.
	if !strings.HasSuffix(got.SessionName, "@11223344556") || len(got.SessionName) != 64 || len(got.Tags) != 1 || got.Duration != time.Hour {
		t.Errorf("request = %+v", got)
	}
}

func TestAWSFailuresNameSTSNotItsAddress(t *testing.T) {
	spec := granttest.MustParse(t, awssts.Kind{}, "role_arn: arn:aws:iam::123456789012:role/x\n")
	// Nothing listens here: the call fails to connect.
	minter := awssts.NewFromConfig(endpointConfig(closedPort(t)))
	_, err := minter.Mint(context.Background(), grant.Request{Spec: spec, Lifetime: time.Hour, Claims: granttest.Claims(t, "github-push-main", nil),
		Job: platform.Job{Who: "acme/app"}})
	var up *grant.UpstreamError
	if !errors.As(err, &up) || !up.Transient || up.Provider != "AWS STS" {
		t.Fatalf("err = %#v", err)
	}
	if msg := up.Error(); msg != "AWS STS failed: could not be reached" {
		t.Errorf("message %q", msg)
	}
	if !strings.Contains(fmt.Sprint(up.Err), "127.0.0.1") {
		t.Errorf("the log detail lost the address: %v", up.Err)
	}
}

type assumerFunc func(context.Context, awssts.Request) (*awssts.Credentials, error)

func (f assumerFunc) AssumeRole(ctx context.Context, req awssts.Request) (*awssts.Credentials, error) {
	return f(ctx, req)
}
