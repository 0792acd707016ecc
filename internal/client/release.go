package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What `ferry exchange` leaves for `ferry release`: one file a credential,
// named by its request id, in a directory of the job's own temporary
// space, never in the workspace (which artifacts and caches upload).
const (
	releaseFileVersion = 1
	releaseFileExt     = ".json"
	// maxReleaseFile bounds what is read back of one.
	maxReleaseFile = 64 << 10
)

// fileRequestID is what a request id must look like to name a file.
var fileRequestID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ReleaseFile is one credential to release at job end. It holds the
// release token, and for kinds that must present the credential to end
// it, the credential: a secret, kept in a 0600 file in a 0700 directory.
type ReleaseFile struct {
	Version      int       `json:"version"`
	URL          string    `json:"url"`
	Policy       string    `json:"policy"`
	RequestID    string    `json:"request_id"`
	ReleaseToken string    `json:"release_token"`
	ExpiresAt    time.Time `json:"expires_at"`
	// Token is the credential itself, only for kinds whose provider ends
	// it only when shown it (GitHub).
	Token string `json:"token,omitempty"`
}

// Presented is the credential release must show the broker: set only for
// kinds whose provider ends a credential only when presented with it
// (GitHub's DELETE /installation/token). aws, gcp and token are ended
// without it, so for them it is "".
func Presented(res *Result) string {
	if res.GitHub != nil {
		return res.GitHub.Token
	}
	return ""
}

// ReleaseDir is the job's directory for release files: on GitHub Actions
// $RUNNER_TEMP/ferry-release (the runner empties RUNNER_TEMP after every
// job); elsewhere ferry-release-UID/JOB under the system's temporary
// directory (TMPDIR), JOB being GitLab's CI_JOB_ID, or "local". A
// directory inside the job's workspace (GITHUB_WORKSPACE, CI_PROJECT_DIR,
// CI_BUILDS_DIR) is refused: artifacts and caches are taken from there.
func ReleaseDir(env Env) (string, error) {
	var dir string
	if rt := env("RUNNER_TEMP"); rt != "" {
		dir = filepath.Join(rt, "ferry-release")
	} else {
		tmp := env("TMPDIR")
		if tmp == "" {
			tmp = os.TempDir()
		}
		job := "local"
		if id := env("CI_JOB_ID"); fileRequestID.MatchString(id) {
			job = "job-" + id
		}
		dir = filepath.Join(tmp, "ferry-release-"+strconv.Itoa(os.Getuid()), job)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("release directory %s: %w", dir, err)
	}
	for _, name := range []string{"GITHUB_WORKSPACE", "CI_PROJECT_DIR", "CI_BUILDS_DIR"} {
		if ws := env(name); ws != "" && within(abs, ws) {
			return "", fmt.Errorf("release directory %s is inside %s (%s), which artifacts and caches may upload; set RUNNER_TEMP or TMPDIR outside it", abs, name, ws)
		}
	}
	return abs, nil
}

// within reports whether path is dir or under it.
func within(path, dir string) bool {
	d, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(d, path)
	return err == nil && (rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))))
}

// ensurePrivateDir creates dir (and its missing parents) as 0700 and
// checks it is a real directory of this user that no one else can read
// or write: in a shared /tmp, someone else could have made it first.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("release directory: %w", err)
	}
	return checkPrivateDir(dir)
}

func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("release directory: %w", err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("release directory %s is a symlink; refusing to use it", dir)
	case !fi.IsDir():
		return fmt.Errorf("release directory %s is not a directory", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("release directory %s is open to other users (mode %o); refusing to use it", dir, fi.Mode().Perm())
	}
	if !ownedByMe(fi) {
		return fmt.Errorf("release directory %s belongs to another user; refusing to use it", dir)
	}
	return nil
}

// SaveRelease writes what `ferry release` needs of res into dir, as a
// 0600 file named by its request id, and returns its path. presented is
// the credential itself for kinds that must show it (see Presented), ""
// otherwise. An answer without a release token has nothing to save.
func SaveRelease(dir, brokerURL string, res *Result, presented string) (string, error) {
	if res.ReleaseToken == "" {
		return "", errors.New("the broker's answer carries no release_token")
	}
	if !fileRequestID.MatchString(res.RequestID) {
		return "", fmt.Errorf("request id %q cannot name a release file", res.RequestID)
	}
	if err := ensurePrivateDir(dir); err != nil {
		return "", err
	}
	data, err := json.Marshal(ReleaseFile{Version: releaseFileVersion, URL: brokerURL, Policy: res.Policy, RequestID: res.RequestID,
		ReleaseToken: res.ReleaseToken, ExpiresAt: res.ExpiresAt, Token: presented})
	if err != nil {
		return "", fmt.Errorf("encode release file: %w", err)
	}
	// Written whole, then renamed into place: `ferry release` never reads
	// half a file.
	f, err := os.CreateTemp(dir, ".pending-*")
	if err != nil {
		return "", fmt.Errorf("write release file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone once renamed; cleans up after a failure
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", fmt.Errorf("write release file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", fmt.Errorf("write release file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write release file: %w", err)
	}
	path := filepath.Join(dir, res.RequestID+releaseFileExt)
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write release file: %w", err)
	}
	return path, nil
}

// PendingReleases lists the release files in dir, oldest request first
// (request ids sort by time). A directory that does not exist holds none.
func PendingReleases(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release directory: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if e.Type().IsRegular() && strings.HasSuffix(name, releaseFileExt) && fileRequestID.MatchString(strings.TrimSuffix(name, releaseFileExt)) {
			out = append(out, filepath.Join(dir, name))
		}
	}
	slices.Sort(out)
	return out, nil
}

// DropExpired removes the release files in dir whose credentials expired
// before now: those ended by themselves and a release can no longer end
// them. Outside CI nothing empties the directory at job end, so each
// `ferry exchange` clears what earlier ones left. Files it cannot read are
// left for `ferry release` to report. It returns how many it removed.
func DropExpired(dir string, now time.Time) (int, error) {
	files, err := PendingReleases(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, path := range files {
		rf, err := ReadRelease(path)
		if err != nil || rf.ExpiresAt.IsZero() || rf.ExpiresAt.After(now) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, fmt.Errorf("remove expired release file: %w", err)
		}
		n++
	}
	return n, nil
}

// ReadRelease reads one release file, refusing one that others could have
// written or that is not what SaveRelease writes.
func ReadRelease(path string) (*ReleaseFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 || !ownedByMe(fi) {
		return nil, fmt.Errorf("release file %s is not private to this user; refusing it", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxReleaseFile+1))
	if err != nil {
		return nil, fmt.Errorf("read release file: %w", err)
	}
	if len(data) > maxReleaseFile {
		return nil, fmt.Errorf("release file %s is larger than %d bytes", path, maxReleaseFile)
	}
	var rf ReleaseFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("release file %s is not one `ferry exchange` wrote", path)
	}
	switch {
	case rf.Version != releaseFileVersion:
		return nil, fmt.Errorf("release file %s has version %d; this ferry reads version %d", path, rf.Version, releaseFileVersion)
	case rf.RequestID == "" || rf.ReleaseToken == "":
		return nil, fmt.Errorf("release file %s lacks its request id or release token", path)
	case filepath.Base(path) != rf.RequestID+releaseFileExt:
		return nil, fmt.Errorf("release file %s names another request", path)
	}
	return &rf, nil
}

// ReleaseRequest is the body of POST /v1/release.
type ReleaseRequest struct {
	RequestID    string `json:"request_id"`
	ReleaseToken string `json:"release_token"`
	Token        string `json:"token,omitempty"`
}

// ReleaseResult is the broker's answer to a release.
type ReleaseResult struct {
	RequestID string `json:"request_id"`
	Released  bool   `json:"released"`
	Revoked   bool   `json:"revoked"`
	Detail    string `json:"detail"`
}

// Release ends a credential at the broker, retrying what may pass (429,
// 502, 503, a dropped connection) as Exchange does. A refusal is an
// *APIError.
func (c *Client) Release(ctx context.Context, req ReleaseRequest) (*ReleaseResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode release: %w", err)
	}
	data, err := c.call(ctx, brokerCall{op: "release", path: "/v1/release", secret: "the release token", body: body})
	if err != nil {
		return nil, err
	}
	var res ReleaseResult
	if err := json.Unmarshal(data, &res); err != nil || !res.Released {
		return nil, errors.New("release: the broker answered 200 with a body that is not a release")
	}
	return &res, nil
}
