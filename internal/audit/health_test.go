package audit

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestHealthyReportsALogThatRefusesWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy of a fresh log = %v", err)
	}
	if _, err := l.Write(context.Background(), sample(0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy after a good write = %v", err)
	}

	l.fsync = func() error { return errors.New("EIO") }
	if _, err := l.Write(context.Background(), sample(1)); err == nil {
		t.Fatal("a Write whose fsync failed succeeded")
	}
	err = l.Healthy()
	if err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("Healthy after a failed fsync = %v, want the fsync's error", err)
	}
	// The Log refuses writes from now on, so Healthy must keep saying so,
	// even once the disk would work again.
	l.fsync = func() error { return nil }
	if _, err := l.Write(context.Background(), sample(2)); err == nil {
		t.Fatal("a broken log took a write")
	}
	if l.Healthy() == nil {
		t.Error("Healthy = nil for a log that refuses writes")
	}
}

func TestHealthyOfAClosedLog(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := l.Healthy(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Healthy of a closed log = %v", err)
	}
}
