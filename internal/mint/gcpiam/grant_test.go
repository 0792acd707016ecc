package gcpiam_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	"google.golang.org/grpc/codes"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
	"github.com/ferry-broker/ferry/internal/testsupport/granttest"
)

func TestGCPGrantIsDecodedWithDefaults(t *testing.T) {
	g := granttest.MustParse(t, gcpiam.Kind{}, `
service_account: 123456789-compute@developer.gserviceaccount.com
delegates: [hop@acme-prod.iam.gserviceaccount.com]
`).(*gcpiam.Spec)
	want := gcpiam.Spec{
		ServiceAccount: "123456789-compute@developer.gserviceaccount.com",
		Scopes:         []string{"https://www.googleapis.com/auth/cloud-platform"},
		Delegates:      []string{"hop@acme-prod.iam.gserviceaccount.com"},
		Duration:       10 * time.Minute,
	}
	if !reflect.DeepEqual(*g, want) || g.Kind() != "gcp" {
		t.Errorf("gcp grant = %+v", *g)
	}
}

func TestGCPGrantLimitsAreGoogleOwn(t *testing.T) {
	const sa = "service_account: deploy@acme-prod.iam.gserviceaccount.com\n"
	rules := func(n int) string {
		var b strings.Builder
		b.WriteString("access_boundary:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {available_resource: //storage.googleapis.com/projects/_/buckets/b%d, available_permissions: [inRole:roles/storage.objectViewer]}\n", i)
		}
		return b.String()
	}
	granttest.Check(t, gcpiam.Kind{}, map[string][2]string{
		"a minute":                 {sa + "duration: 1m\n", ""},
		"under a minute":           {sa + "duration: 59s\n", "p.yaml:2:11: grant.gcp.duration 59s is out of range: allowed 1m..1h"},
		"an hour, Google's limit":  {sa + "duration: 1h\n", ""},
		"over an hour":             {sa + "duration: 61m\n", "p.yaml:2:11: grant.gcp.duration 61m is out of range: allowed 1m..1h"},
		"10 access boundary rules": {sa + rules(10), ""},
		"11 access boundary rules": {sa + rules(11), "p.yaml:3:3: grant.gcp.access_boundary has 11 rules; Google allows at most 10"},
		"a service account ending in a hyphen": {"service_account: deploy-@acme-prod.iam.gserviceaccount.com\n",
			`p.yaml:1:18: grant.gcp.service_account "deploy-@acme-prod.iam.gserviceaccount.com" is not a service account email such as deploy@PROJECT.iam.gserviceaccount.com: service account "deploy-@acme-prod.iam.gserviceaccount.com": the name before @ must be lowercase letters, digits and hyphens, not starting or ending with a hyphen`},
		"a bare inRole permission": {sa + "access_boundary:\n  - {available_resource: //x/y, available_permissions: [\"inRole:\"]}\n",
			`p.yaml:3:57: grant.gcp.access_boundary[0].available_permissions: "inRole:" must be inRole:ROLE`},
		"a scope that is not a URL": {sa + "scopes: [cloud-platform]\n",
			`p.yaml:2:10: grant.gcp.scopes: "cloud-platform" is not an OAuth scope URL such as https://www.googleapis.com/auth/cloud-platform`},
		"a scope with a space": {sa + "scopes: [\"https://x y\"]\n",
			`p.yaml:2:10: grant.gcp.scopes: "https://x y" is not an OAuth scope URL such as https://www.googleapis.com/auth/cloud-platform`},
	})
}

func TestGCPGrantMintsABearerToken(t *testing.T) {
	spec := granttest.MustParse(t, gcpiam.Kind{}, "service_account: "+deploySA+"\n")
	m := newMinter(t, gcpfake.Start(t, grantFixed))
	cred, err := m.Mint(context.Background(), grant.Request{Spec: spec, Lifetime: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a := cred.Answer.(*gcpiam.Answer)
	if a.AccessToken == "" || cred.Bearer == nil || cred.Bearer.Token != a.AccessToken || cred.ID != deploySA {
		t.Errorf("credential = %+v, answer %+v", cred, a)
	}
}

func TestGCPFailuresNameGoogleAndItsReason(t *testing.T) {
	spec := granttest.MustParse(t, gcpiam.Kind{}, "service_account: "+deploySA+"\n")
	tests := []struct {
		name      string
		err       error
		want      string
		transient bool
	}{
		{"permission denied", gcpfake.Error(codes.PermissionDenied, "IAM_PERMISSION_DENIED", "Permission denied"),
			"Google IAM Credentials failed: IAM_PERMISSION_DENIED: Permission denied", false},
		{"throttled", gcpfake.Error(codes.ResourceExhausted, "", "Quota exceeded"),
			"Google IAM Credentials failed: ResourceExhausted: Quota exceeded", true},
		{"a backend error", gcpfake.Error(codes.Internal, "", "backend error"),
			"Google IAM Credentials failed: Internal: backend error", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMinter(t, gcpfake.Start(t, func(context.Context, *credentialspb.GenerateAccessTokenRequest) (*credentialspb.GenerateAccessTokenResponse, error) {
				return nil, tt.err
			}))
			_, err := m.Mint(context.Background(), grant.Request{Spec: spec, Lifetime: 5 * time.Minute})
			var up *grant.UpstreamError
			if !errors.As(err, &up) || up.Error() != tt.want || up.Transient != tt.transient {
				t.Errorf("err = %v (transient %v), want %q (transient %v)", err, up != nil && up.Transient, tt.want, tt.transient)
			}
		})
	}
}
