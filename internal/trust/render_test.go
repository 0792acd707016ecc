package trust

import (
	"encoding/json"
	"errors"
	"github.com/ferry-broker/ferry/internal/claimtmpl"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"reflect"
	"strings"
	"testing"
)

// templated is a policy of each grant type whose grant uses templates. The
// match lets any acme repository through, so the templates see whatever
// repository claim a token carries.
var templated = map[string]string{
	"aws.yaml": `issuer: github
match:
  repository_owner_id: "45678901"
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/artifacts
    session_policy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: [s3:GetObject]
          Resource: ["arn:aws:s3:::artifacts/{{ repository }}/*", "arn:aws:s3:::shared/*"]
          Condition: {StringEquals: {"aws:RequestTag/ref": "{{ref}}"}}
`,
	"awsjson.yaml": `issuer: github
match:
  repository_owner_id: "45678901"
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/artifacts
    session_policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::artifacts/{{repository}}/*"}]}'
`,
	"gcp.yaml": `issuer: github
match:
  repository_owner_id: "45678901"
grant:
  gcp:
    service_account: deploy@acme-prod.iam.gserviceaccount.com
    access_boundary:
      - available_resource: //storage.googleapis.com/projects/_/buckets/{{repository_owner}}-deploy
        available_permissions: [inRole:roles/storage.objectViewer]
        condition:
          title: own prefix
          expression: resource.name.startsWith("projects/_/buckets/acme-deploy/objects/{{repository}}/")
      - available_resource: //storage.googleapis.com/projects/_/buckets/common
        available_permissions: [inRole:roles/storage.objectViewer]
`,
	"tok.yaml": `issuer: github
match:
  repository_owner_id: "45678901"
grant:
  token:
    audience: https://svc.example
    extra_claims:
      uploader: "{{repository}}@{{run_id}}"
      tier: gold
`,
}

func TestRenderFillsTemplatesIntoTheirFields(t *testing.T) {
	set := mustLoad(t, templated)
	c := sampleClaims(t, "github-push-main", nil)

	aws, _ := set.Lookup("aws")
	g, err := aws.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::artifacts/acme/app/*","arn:aws:s3:::shared/*"],"Condition":{"StringEquals":{"aws:RequestTag/ref":"refs/heads/main"}}}]}`
	if got := g.(*awssts.Spec).SessionPolicy; got != want {
		t.Errorf("session policy:\n%s\nwant\n%s", got, want)
	}
	if own := aws.Grant.(*awssts.Spec).SessionPolicy; !strings.Contains(own, "artifacts/{{ repository }}/*") {
		t.Errorf("rendering changed the policy's own grant: %s", own)
	}

	awsjson, _ := set.Lookup("awsjson")
	g, err = awsjson.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::artifacts/acme/app/*"}]}`; g.(*awssts.Spec).SessionPolicy != want {
		t.Errorf("session policy from JSON text:\n%s\nwant\n%s", g.(*awssts.Spec).SessionPolicy, want)
	}

	gcp, _ := set.Lookup("gcp")
	g, err = gcp.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []gcpiam.BoundaryRule{
		{AvailableResource: "//storage.googleapis.com/projects/_/buckets/acme-deploy",
			AvailablePermissions: []string{"inRole:roles/storage.objectViewer"},
			Condition: &gcpiam.BoundaryCondition{Title: "own prefix",
				Expression: `resource.name.startsWith("projects/_/buckets/acme-deploy/objects/acme/app/")`}},
		{AvailableResource: "//storage.googleapis.com/projects/_/buckets/common",
			AvailablePermissions: []string{"inRole:roles/storage.objectViewer"}},
	}
	if got := g.(*gcpiam.Spec).AccessBoundary; !reflect.DeepEqual(got, wantRules) {
		t.Errorf("access boundary = %+v", got)
	}
	if gcp.Grant.(*gcpiam.Spec).AccessBoundary[0].Condition.Expression == wantRules[0].Condition.Expression {
		t.Error("rendering changed the policy's own grant")
	}

	tok, _ := set.Lookup("tok")
	g, err = tok.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"uploader": "acme/app@11223344556", "tier": "gold"}; !reflect.DeepEqual(g.(*tokensign.Spec).Extra, want) {
		t.Errorf("extra claims = %v", g.(*tokensign.Spec).Extra)
	}
}

func TestRenderRefusesHostileClaimValues(t *testing.T) {
	set := mustLoad(t, templated)
	tests := []struct {
		name       string
		repository any // nil: the claim is absent
		wantReason string
	}{
		{"a missing claim", nil, "the token does not carry it"},
		{"an empty value", "", "it is empty"},
		{"a wildcard that would widen the ARN", "acme/*", `contains "*"`},
		{"a single-character wildcard", "acme/ap?", `contains "?"`},
		{"a quote", `acme/"app`, `contains "\""`},
		{"a JSON breakout", `x"}],"Effect":"Allow`, `contains "\""`},
		{"an escaped JSON breakout", `\"}],"Effect":"Allow`, `contains "\\"`},
		{"a newline", "acme/app\nx", "contains whitespace or a control character"},
		{"a space", "acme/my app", "contains whitespace or a control character"},
		{"a NUL byte", "acme/app\x00", "contains whitespace or a control character"},
		{"a parent directory segment", "acme/../other", `contains a ".." path segment`},
		{"a leading parent directory segment", "../etc", `contains a ".." path segment`},
		{"a very long value", "acme/" + strings.Repeat("a", 300), "it is longer than 256 characters"},
		{"a non-ASCII letter", "acmé/app", `contains "é"`},
		{"a lookalike slash", "acme∕app", `contains "∕"`},
		{"an IAM policy variable", "acme/${aws:username}", `contains "$"`},
		{"a CEL breakout", `acme/app") || true || ("`, `contains "\""`},
		{"a single-quote CEL breakout", `acme/app') || true || ('`, `contains "'"`},
	}
	fields := map[string]string{
		"aws":     "aws.session_policy",
		"awsjson": "aws.session_policy",
		"gcp":     "gcp.access_boundary[0].condition.expression",
		"tok":     "token.extra_claims.uploader",
	}
	for _, tt := range tests {
		for policy, field := range fields {
			t.Run(tt.name+" is refused by "+policy, func(t *testing.T) {
				p, _ := set.Lookup(policy)
				c := sampleClaims(t, "github-push-main", map[string]any{"repository": nil, "repository_owner": "acme"})
				if tt.repository != nil {
					c = sampleClaims(t, "github-push-main", map[string]any{"repository": tt.repository})
				}
				g, err := p.Render(c)
				var te *claimtmpl.Error
				if !errors.As(err, &te) {
					t.Fatalf("Render = %+v, %v; want a *claimtmpl.Error", g, err)
				}
				if te.Field != field || te.Claim != "repository" || te.Reason != tt.wantReason {
					t.Errorf("got field %q claim %q reason %q, want %q %q %q", te.Field, te.Claim, te.Reason, field, "repository", tt.wantReason)
				}
			})
		}
	}
}

func TestTemplateErrorMessagesNameTheClaimAndTheField(t *testing.T) {
	set := mustLoad(t, templated)
	p, _ := set.Lookup("aws")
	tests := []struct {
		name  string
		edits map[string]any
		want  string
	}{
		{"an unsafe value", map[string]any{"repository": "a*b"},
			`claim "repository" = "a*b" cannot be used in aws.session_policy: contains "*"`},
		{"a missing claim", map[string]any{"repository": nil},
			`claim "repository" cannot be used in aws.session_policy: the token does not carry it`},
		{"a hostile value is quoted and cut short", map[string]any{"repository": "\"}],\"Effect\":\"Allow\n" + strings.Repeat("x", 100)},
			`claim "repository" = "\"}],\"Effect\":\"Allow\n` + strings.Repeat("x", 60) + `…" cannot be used in aws.session_policy: contains "\""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Render(sampleClaims(t, "github-push-main", tt.edits))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestRenderedSessionPolicyIsValidJSONForEverySafeValue(t *testing.T) {
	set := mustLoad(t, templated)
	p, _ := set.Lookup("aws")
	for _, repo := range []string{"acme/app", "acme/app.v2", "a_b/c-d", "x@y/z+w=v,u:t"} {
		g, err := p.Render(sampleClaims(t, "github-push-main", map[string]any{"repository": repo}))
		if err != nil {
			t.Fatalf("%s: %v", repo, err)
		}
		var doc struct {
			Statement []struct{ Resource []string }
		}
		if err := json.Unmarshal([]byte(g.(*awssts.Spec).SessionPolicy), &doc); err != nil {
			t.Fatalf("%s: %v", repo, err)
		}
		if got := doc.Statement[0].Resource[0]; got != "arn:aws:s3:::artifacts/"+repo+"/*" {
			t.Errorf("resource = %q", got)
		}
	}
}

func TestRenderRefusesASessionPolicyThatOutgrowsSTSLimit(t *testing.T) {
	// 12 templates of up to 256 characters each cannot fit in 2048.
	res := strings.Repeat(`"arn:aws:s3:::b/{{repository}}",`, 12)
	src := `issuer: github
match: {repository_owner_id: "45678901"}
grant:
  aws:
    role_arn: arn:aws:iam::123456789012:role/x
    session_policy: '{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":[` + strings.TrimSuffix(res, ",") + `]}]}'
`
	set := mustLoad(t, map[string]string{"p.yaml": src})
	p, _ := set.Lookup("p")
	if _, err := p.Render(sampleClaims(t, "github-push-main", nil)); err != nil {
		t.Fatalf("short values: %v", err)
	}
	_, err := p.Render(sampleClaims(t, "github-push-main", map[string]any{"repository": "acme/" + strings.Repeat("a", 200)}))
	var te *claimtmpl.Error
	if !errors.As(err, &te) || te.Claim != "" || !strings.Contains(err.Error(), "aws.session_policy cannot be filled in: it would be") {
		t.Errorf("err = %v", err)
	}
}
