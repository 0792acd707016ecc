package client

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func releaseEnv(m map[string]string) Env { return func(k string) string { return m[k] } }

func TestReleaseDirIsTheJobsTempNeverTheWorkspace(t *testing.T) {
	tmp := t.TempDir()
	uid := strconv.Itoa(os.Getuid())
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"GitHub Actions: RUNNER_TEMP", map[string]string{"RUNNER_TEMP": tmp + "/runner/_temp", "GITHUB_WORKSPACE": tmp + "/runner/work/app/app"},
			tmp + "/runner/_temp/ferry-release", ""},
		{"GitLab: TMPDIR, by job", map[string]string{"TMPDIR": tmp, "CI_JOB_ID": "4711", "CI_PROJECT_DIR": tmp + "/builds/group/app"},
			tmp + "/ferry-release-" + uid + "/job-4711", ""},
		{"a job id that cannot name a directory", map[string]string{"TMPDIR": tmp, "CI_JOB_ID": "../x"},
			tmp + "/ferry-release-" + uid + "/local", ""},
		{"a machine outside CI", map[string]string{"TMPDIR": tmp}, tmp + "/ferry-release-" + uid + "/local", ""},
		{"TMPDIR inside the GitLab project", map[string]string{"TMPDIR": tmp + "/builds/group/app/tmp", "CI_PROJECT_DIR": tmp + "/builds/group/app"},
			"", "inside CI_PROJECT_DIR"},
		{"RUNNER_TEMP inside the GitHub workspace", map[string]string{"RUNNER_TEMP": tmp + "/ws/.tmp", "GITHUB_WORKSPACE": tmp + "/ws"},
			"", "inside GITHUB_WORKSPACE"},
		{"the builds dir itself", map[string]string{"TMPDIR": tmp + "/builds", "CI_BUILDS_DIR": tmp + "/builds"}, "", "inside CI_BUILDS_DIR"},
		{"a sibling that shares a prefix is not inside", map[string]string{"TMPDIR": tmp + "/app-tmp", "CI_PROJECT_DIR": tmp + "/app"},
			tmp + "/app-tmp/ferry-release-" + uid + "/local", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReleaseDir(releaseEnv(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReleaseDir = %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ReleaseDir = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func testResult() *Result {
	return &Result{Policy: "artifacts", RequestID: "01JREQUEST", ExpiresAt: time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC),
		ReleaseToken: "release-SECRET-token"}
}

func TestSaveReleaseWritesAPrivateFileThatReadsBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ferry-release")
	path, err := SaveRelease(dir, "https://ferry.example.com", testResult(), "")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "01JREQUEST.json") {
		t.Errorf("path = %s", path)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
	rf, err := ReadRelease(path)
	if err != nil {
		t.Fatal(err)
	}
	want := ReleaseFile{Version: 1, URL: "https://ferry.example.com", Policy: "artifacts", RequestID: "01JREQUEST",
		ReleaseToken: "release-SECRET-token", ExpiresAt: testResult().ExpiresAt}
	if *rf != want {
		t.Errorf("read back %+v, want %+v", *rf, want)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), `"token"`) {
		t.Errorf("a kind that needs no credential at release had it kept: %s", raw)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the release file", len(entries))
	}

	// A kind that must present its credential keeps it, in the same file.
	res := testResult()
	res.RequestID = "01JGITHUB"
	path, err = SaveRelease(dir, "https://ferry.example.com", res, "ghs_SECRET")
	if err != nil {
		t.Fatal(err)
	}
	if rf, err := ReadRelease(path); err != nil || rf.Token != "ghs_SECRET" {
		t.Errorf("read back %+v, %v", rf, err)
	}
	files, err := PendingReleases(dir)
	if err != nil || len(files) != 2 || filepath.Base(files[0]) != "01JGITHUB.json" {
		t.Errorf("PendingReleases = %v, %v", files, err)
	}
}

func TestDropExpiredRemovesOnlyCredentialsThatEndedByThemselves(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ferry-release")
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for id, exp := range map[string]time.Time{
		"01JEXPIRED": now.Add(-time.Minute),
		"01JATNOW":   now,
		"01JLIVE":    now.Add(time.Minute),
	} {
		res := testResult()
		res.RequestID, res.ExpiresAt = id, exp
		if _, err := SaveRelease(dir, "https://ferry.example.com", res, ""); err != nil {
			t.Fatal(err)
		}
	}
	// Not a release file: never touched.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := DropExpired(dir, now)
	if err != nil || n != 2 {
		t.Fatalf("DropExpired = %d, %v; want 2 removed", n, err)
	}
	files, _ := PendingReleases(dir)
	var left []string
	for _, f := range files {
		left = append(left, filepath.Base(f))
	}
	if want := []string{"01JLIVE.json"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("a file that is not a release file went: %v", err)
	}
	if n, err := DropExpired(filepath.Join(dir, "missing"), now); err != nil || n != 0 {
		t.Errorf("a missing directory: %d, %v", n, err)
	}
}

func TestReleaseFilesRefuseWhatOthersCouldHaveTouched(t *testing.T) {
	t.Run("an answer without a release token", func(t *testing.T) {
		res := testResult()
		res.ReleaseToken = ""
		if _, err := SaveRelease(t.TempDir(), "u", res, ""); err == nil {
			t.Error("saved an answer without a release token")
		}
	})
	t.Run("a request id that is a path", func(t *testing.T) {
		res := testResult()
		res.RequestID = "../../etc/cron.d/x"
		if _, err := SaveRelease(t.TempDir(), "u", res, ""); err == nil {
			t.Error("saved under a request id with a path in it")
		}
	})
	t.Run("a directory others can write", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "open")
		if err := os.Mkdir(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o777)
		if _, err := SaveRelease(dir, "u", testResult(), ""); err == nil || !strings.Contains(err.Error(), "open to other users") {
			t.Errorf("SaveRelease into a 0777 directory: %v", err)
		}
		if _, err := PendingReleases(dir); err == nil {
			t.Error("PendingReleases read a 0777 directory")
		}
	})
	t.Run("a symlinked directory", func(t *testing.T) {
		base := t.TempDir()
		real := filepath.Join(base, "real")
		os.Mkdir(real, 0o700)
		link := filepath.Join(base, "link")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		if _, err := SaveRelease(link, "u", testResult(), ""); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Errorf("SaveRelease into a symlink: %v", err)
		}
	})
	t.Run("a file others can read", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		path, err := SaveRelease(dir, "u", testResult(), "")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, 0o644)
		if _, err := ReadRelease(path); err == nil {
			t.Error("read a 0644 release file")
		}
	})
	t.Run("a file renamed to another request", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		path, _ := SaveRelease(dir, "u", testResult(), "")
		other := filepath.Join(dir, "01JOTHER.json")
		os.Rename(path, other)
		if _, err := ReadRelease(other); err == nil {
			t.Error("read a release file under another request's name")
		}
	})
	t.Run("a file that is not a release file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		os.Mkdir(dir, 0o700)
		path := filepath.Join(dir, "01JX.json")
		os.WriteFile(path, []byte(`{"version":1,"request_id":"01JX","release_token":"t","extra":1}`), 0o600)
		if _, err := ReadRelease(path); err == nil {
			t.Error("read a file with an unknown member")
		}
		os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
		os.WriteFile(filepath.Join(dir, ".pending-123"), []byte("x"), 0o600)
		files, err := PendingReleases(dir)
		if err != nil || len(files) != 1 {
			t.Errorf("PendingReleases = %v, %v; want only the .json", files, err)
		}
	})
	t.Run("a directory that does not exist holds nothing", func(t *testing.T) {
		files, err := PendingReleases(filepath.Join(t.TempDir(), "none"))
		if err != nil || len(files) != 0 {
			t.Errorf("PendingReleases = %v, %v", files, err)
		}
	})
}

const releasedBody = `{"request_id":"01JREQUEST","released":true,"revoked":true,"detail":"token 01J… is revoked"}`

func TestClientRelease(t *testing.T) {
	tests := []struct {
		name     string
		replies  []reply
		want     *ReleaseResult
		wantCode string
		attempts int
	}{
		{"released", []reply{{status: 200, body: releasedBody}},
			&ReleaseResult{RequestID: "01JREQUEST", Released: true, Revoked: true, Detail: "token 01J… is revoked"}, "", 1},
		{"a wrong release token is final", []reply{{status: 403, body: errBody("access_denied", "release_token does not belong to that request_id")}},
			nil, "access_denied", 1},
		{"an unavailable broker is retried", []reply{{status: 503, retryAfter: "1", body: errBody("unavailable", "replay store")}, {status: 200, body: releasedBody}},
			&ReleaseResult{RequestID: "01JREQUEST", Released: true, Revoked: true, Detail: "token 01J… is revoked"}, "", 2},
		{"a 200 that is not a release", []reply{{status: 200, body: `{"hello":"world"}`}}, nil, "", 1},
		{"a redirect is not followed", []reply{{status: 307, body: ""}}, nil, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, tt.replies...)
			c := &Client{BaseURL: b.srv.URL, MaxWait: 10 * time.Millisecond}
			res, err := c.Release(context.Background(), ReleaseRequest{RequestID: "01JREQUEST", ReleaseToken: "release-SECRET-token"})
			seen := b.seen()
			if len(seen) != tt.attempts {
				t.Errorf("%d attempts, want %d", len(seen), tt.attempts)
			}
			for _, a := range seen {
				if a.path != "/v1/release" || a.raw != `{"request_id":"01JREQUEST","release_token":"release-SECRET-token"}` {
					t.Errorf("sent %s %s", a.path, a.raw)
				}
			}
			var apiErr *APIError
			switch {
			case tt.want != nil:
				if err != nil || *res != *tt.want {
					t.Errorf("Release = %+v, %v", res, err)
				}
			case tt.wantCode != "":
				if !errors.As(err, &apiErr) || apiErr.Code != tt.wantCode {
					t.Errorf("err = %v, want %s", err, tt.wantCode)
				}
			default:
				if err == nil {
					t.Errorf("Release = %+v, want an error", res)
				}
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error shows the release token: %v", err)
			}
		})
	}
}

func TestClientReleaseSendsTheCredentialOnlyWhenGivenAndOnlyOverTLS(t *testing.T) {
	b := newBroker(t, reply{status: 200, body: releasedBody})
	c := &Client{BaseURL: b.srv.URL + "/base/"}
	if _, err := c.Release(context.Background(), ReleaseRequest{RequestID: "01JREQUEST", ReleaseToken: "r", Token: "ghs_x"}); err != nil {
		t.Fatal(err)
	}
	var sent map[string]string
	a := b.seen()[0]
	if err := json.Unmarshal([]byte(a.raw), &sent); err != nil || sent["token"] != "ghs_x" || a.path != "/base/v1/release" {
		t.Errorf("sent %s to %s", a.raw, a.path)
	}
	for _, u := range []string{"http://ferry.example.com", "ftp://localhost", "not a url"} {
		if _, err := (&Client{BaseURL: u}).Release(context.Background(), ReleaseRequest{RequestID: "a", ReleaseToken: "b"}); err == nil {
			t.Errorf("released to %q", u)
		}
	}
}
