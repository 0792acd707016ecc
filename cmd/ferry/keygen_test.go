package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

func TestKeygenWritesAnES256KeyOnceAndNeverOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	keygen := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := runKeygen(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, out, stderr := keygen("--out", path)
	if code != exitOK {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	k, err := tokensign.LoadKeyFile(path)
	if err != nil {
		t.Fatalf("the written key does not load: %v", err)
	}
	if k.Alg != jose.ES256 {
		t.Errorf("alg = %s, want ES256", k.Alg)
	}
	if !strings.Contains(out, k.ID) {
		t.Errorf("output %q does not name the key id %s", out, k.ID)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %o, want 600", perm)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	if code, _, stderr := keygen("--out", path); code != exitFail || !strings.Contains(stderr, "exists") {
		t.Errorf("second keygen to the same file: exit %d, stderr %q; want 1 naming the existing file", code, stderr)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("a refused keygen changed the existing key")
	}

	if code, _, _ := keygen("stray"); code != exitUsage {
		t.Errorf("keygen with an argument: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := keygen("-h"); code != exitOK {
		t.Errorf("keygen -h: exit %d, want %d", code, exitOK)
	}
}
