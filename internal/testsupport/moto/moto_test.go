package moto_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ferry-broker/ferry/internal/testsupport/moto"
)

func TestStartServesSTSAndCloseStopsIt(t *testing.T) {
	s := moto.Start(t)

	out, err := sts.NewFromConfig(s.AWSConfig()).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity against moto: %v", err)
	}
	if got := *out.Account; got != moto.AccountID {
		t.Errorf("account = %q, want %q", got, moto.AccountID)
	}

	s.Close()
	s.Close() // a second Close is harmless: the test's cleanup calls it again
	if resp, err := http.Get(s.URL + "/moto-api/"); err == nil {
		resp.Body.Close()
		t.Fatalf("moto_server still answers on %s after Close", s.URL)
	}
}
