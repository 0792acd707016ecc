package gcpiam_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/testsupport/gcpfake"
)

// The Google client library logs whole responses at debug level when
// GOOGLE_SDK_GO_LOGGING_LEVEL=debug; an operator turning that on while
// chasing a problem must still never see a minted token in the logs.
// Not parallel: it swaps os.Stderr, where the library's logger writes.
func TestGoogleDebugLoggingNeverWritesTheAccessToken(t *testing.T) {
	t.Setenv("GOOGLE_SDK_GO_LOGGING_LEVEL", "debug")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	captured := make(chan []byte)
	go func() {
		var buf bytes.Buffer
		io.Copy(&buf, r)
		captured <- buf.Bytes()
	}()

	srv := gcpfake.Start(t, grantFixed)
	m, err := gcpiam.New(context.Background(), srv.ClientOptions()...)
	if err == nil {
		_, err = m.GenerateAccessToken(context.Background(), gcpiam.Request{ServiceAccount: deploySA, Lifetime: 5 * time.Minute})
		m.Close()
	}
	os.Stderr = stderr
	w.Close()
	out := <-captured
	r.Close()
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	if strings.Contains(string(out), "ya29.minted-token") {
		t.Errorf("the access token reached stderr:\n%s", out)
	}
}
