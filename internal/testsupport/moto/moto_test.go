package moto_test

import (
	"context"
	"net/http"
	"runtime"
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

// recordingTB stops the calling goroutine on Skip or Fatal, as testing.T
// does, and remembers which it was.
type recordingTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(string, ...any) {
	r.skipped = true
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit()
}

func TestStartWithoutMotoServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	tests := []struct {
		name, ci              string
		wantSkipped, wantFail bool
	}{
		{"skips the test outside CI", "", true, false},
		{"fails the test under CI=true", "true", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			rec := &recordingTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				moto.Start(rec)
			}()
			<-done
			if rec.skipped != tt.wantSkipped || rec.failed != tt.wantFail {
				t.Errorf("skipped=%v failed=%v, want skipped=%v failed=%v", rec.skipped, rec.failed, tt.wantSkipped, tt.wantFail)
			}
		})
	}
}
