package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-broker/ferry/internal/client"
)

// runRelease is `ferry release`: end, at the broker, every credential
// `ferry exchange` got in this job, and remove what it left for it.
func runRelease(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerURL := fs.String("url", os.Getenv("FERRY_URL"), "broker URL (default $FERRY_URL, else the one each credential came from)")
	dir := fs.String("dir", "", "where `ferry exchange` left its release files (default: the job's temp directory, see `ferry exchange`)")
	requestID := fs.String("request-id", "", "release only this request's credential")
	if err := fs.Parse(args); err != nil {
		return usageCode(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ferry release: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *dir == "" {
		d, err := client.ReleaseDir(os.Getenv)
		if err != nil {
			fmt.Fprintf(stderr, "ferry release: %v\n", err)
			return exitFail
		}
		*dir = d
	}
	files, err := client.PendingReleases(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "ferry release: %v\n", err)
		return exitFail
	}
	if *requestID != "" {
		want := filepath.Join(*dir, *requestID+".json")
		var only []string
		for _, f := range files {
			if f == want {
				only = append(only, f)
			}
		}
		if len(only) == 0 {
			fmt.Fprintf(stderr, "ferry release: no credential of request %s to release in %s\n", *requestID, *dir)
			return exitFail
		}
		files = only
	}
	if len(files) == 0 {
		// A job that got no credential has nothing to end.
		fmt.Fprintf(stderr, "ferry release: nothing to release in %s\n", *dir)
		return exitOK
	}
	code := exitOK
	for _, path := range files {
		if !releaseOne(ctx, path, *brokerURL, stdout, stderr) {
			code = exitFail
		}
	}
	return code
}

// releaseOne releases one file's credential and removes the file once the
// broker answered for good: released, or refused in a way no retry mends.
// What it prints names the request and the broker's reason, never the
// release token or the credential.
func releaseOne(ctx context.Context, path, brokerURL string, stdout, stderr io.Writer) bool {
	rf, err := client.ReadRelease(path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry release: %v\n", err)
		return false
	}
	if brokerURL == "" {
		brokerURL = rf.URL
	}
	if brokerURL == "" {
		fmt.Fprintf(stderr, "ferry release: request %s: no broker URL (pass --url or set FERRY_URL)\n", rf.RequestID)
		return false
	}
	c := &client.Client{BaseURL: brokerURL}
	res, err := c.Release(ctx, client.ReleaseRequest{RequestID: rf.RequestID, ReleaseToken: rf.ReleaseToken, Token: rf.Token})
	if err != nil {
		var apiErr *client.APIError
		if errors.As(err, &apiErr) {
			fmt.Fprintf(stderr, "ferry release: request %s (policy %s): refused: %v\n", rf.RequestID, rf.Policy, apiErr)
			if final(apiErr.Status) {
				// It can never succeed; the file holds a secret, so it goes.
				removeReleaseFile(path, stderr)
			}
		} else {
			fmt.Fprintf(stderr, "ferry release: request %s (policy %s): %v\n", rf.RequestID, rf.Policy, err)
		}
		return false
	}
	how := "released; it expires by itself"
	if res.Revoked {
		how = "released and revoked"
	}
	fmt.Fprintf(stdout, "ferry release: request %s (policy %s): %s: %s\n", res.RequestID, rf.Policy, how, oneLine(res.Detail))
	removeReleaseFile(path, stderr)
	return true
}

// final says a refusal no retry can mend: the broker does not know the
// request or its token, or the request is malformed.
func final(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusForbidden || status == http.StatusNotFound ||
		status == http.StatusRequestEntityTooLarge
}

func removeReleaseFile(path string, stderr io.Writer) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "ferry release: remove %s: %v\n", path, err)
	}
}

// oneLine keeps a broker's detail on one line of the job's log.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// saveRelease leaves what `ferry release` needs in the job's temp
// directory. A failure only warns: the credential is the job's either way,
// and it expires by itself.
func saveRelease(brokerURL string, res *client.Result, stderr io.Writer) {
	if res.ReleaseToken == "" {
		return // a broker from before release at job end
	}
	dir, err := client.ReleaseDir(os.Getenv)
	if err == nil {
		_, err = client.SaveRelease(dir, brokerURL, res, client.Presented(res))
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry exchange: warning: `ferry release` will not find request %s: %v\n", res.RequestID, err)
		return
	}
	if _, err := client.DropExpired(dir, time.Now()); err != nil {
		fmt.Fprintf(stderr, "ferry exchange: warning: clearing expired release files: %v\n", err)
	}
}
