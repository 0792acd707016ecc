package ghapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/testsupport/githubfake"
)

// minted mints the checkout grant at gh and returns the minter, the
// credential and the token.
func minted(t *testing.T, gh *githubfake.Server) (*ghapp.Minter, *grant.Credential, string) {
	t.Helper()
	m := newMinter(t, gh.URL)
	cred, err := m.Mint(context.Background(), request(t, checkout))
	if err != nil {
		t.Fatal(err)
	}
	return m, cred, cred.Answer.(*ghapp.Answer).Token
}

func releaseOf(cred *grant.Credential, presented string) grant.ReleaseRequest {
	return grant.ReleaseRequest{Policy: "checkout", State: cred.Release, ExpiresAt: cred.ExpiresAt, Presented: presented, Now: time.Now()}
}

func TestMinterIsAReleaser(t *testing.T) {
	var _ grant.Releaser = (*ghapp.Minter)(nil)
}

func TestReleaseDeletesTheTokenAtGitHub(t *testing.T) {
	gh := startFake(t)
	m, cred, tok := minted(t, gh)
	var st map[string]any
	if err := json.Unmarshal([]byte(cred.Release), &st); err != nil || st["api_url"] != gh.URL || st["installation_id"] == nil {
		t.Fatalf("release state %s: %v", cred.Release, err)
	}

	got, err := m.Release(context.Background(), releaseOf(cred, tok))
	if err != nil || !got.Revoked || got.Detail != "GitHub deleted the installation token for acme" {
		t.Fatalf("release: %+v, %v", got, err)
	}
	if at, _ := gh.Token(tok); !at.Revoked {
		t.Error("the token still works at GitHub")
	}
	reqs := gh.Requests()
	if last := reqs[len(reqs)-1]; last.Method != "DELETE" || last.Path != "/installation/token" || last.Auth != "token" || last.Status != http.StatusNoContent {
		t.Errorf("last request %+v, want DELETE /installation/token with the token", last)
	}

	// Again: GitHub no longer takes the token, which is said, not failed.
	again, err := m.Release(context.Background(), releaseOf(cred, tok))
	if err != nil || again.Revoked || !strings.Contains(again.Detail, "GitHub no longer accepted the token") {
		t.Errorf("second release: %+v, %v", again, err)
	}
}

func TestReleaseRefusesAnotherToken(t *testing.T) {
	gh := startFake(t)
	m, cred, tok := minted(t, gh)
	_, _, other := minted(t, gh)
	n := len(gh.Requests())

	_, err := m.Release(context.Background(), releaseOf(cred, other))
	if !errors.Is(err, grant.ErrWrongCredential) || strings.Contains(err.Error(), other) {
		t.Errorf("another request's token: %v, want grant.ErrWrongCredential without the token", err)
	}
	_, err = m.Release(context.Background(), releaseOf(cred, ""))
	if !errors.Is(err, grant.ErrCredentialRequired) {
		t.Errorf("no token: %v, want grant.ErrCredentialRequired", err)
	}
	if len(gh.Requests()) != n {
		t.Error("a refused release reached GitHub")
	}
	for _, v := range []string{tok, other} {
		if at, _ := gh.Token(v); at.Revoked {
			t.Error("a refused release deleted a token")
		}
	}
}

func TestReleaseOfAnExpiredTokenAsksNothing(t *testing.T) {
	gh := startFake(t)
	m, cred, tok := minted(t, gh)
	n := len(gh.Requests())
	req := releaseOf(cred, "")
	req.Now = cred.ExpiresAt.Add(time.Second)
	got, err := m.Release(context.Background(), req)
	if err != nil || got.Revoked || !strings.Contains(got.Detail, "expired at") || len(gh.Requests()) != n {
		t.Errorf("release after expiry: %+v, %v", got, err)
	}
	if at, _ := gh.Token(tok); at.Revoked {
		t.Error("deleted")
	}
}

func TestReleaseSendsTheTokenOnlyToTheAPIThatMintedIt(t *testing.T) {
	gh := startFake(t)
	_, cred, tok := minted(t, gh)
	elsewhere := startFake(t)
	got, err := newMinter(t, elsewhere.URL).Release(context.Background(), releaseOf(cred, tok))
	if err != nil || got.Revoked || !strings.Contains(got.Detail, "minted through another GitHub API") {
		t.Errorf("release: %+v, %v", got, err)
	}
	if len(elsewhere.Requests()) != 0 {
		t.Error("the token went to another API")
	}
}

func TestReleaseWhileGitHubIsDown(t *testing.T) {
	gh := startFake(t)
	m, cred, tok := minted(t, gh)
	gh.Fail(&githubfake.Failure{Status: http.StatusBadGateway, Message: "Server Error"})
	_, err := m.Release(context.Background(), releaseOf(cred, tok))
	if ue := upstream(t, err); ue.Error() != "GitHub failed: 502: Server Error" || !ue.Transient {
		t.Errorf("error %q", ue.Error())
	}
}

func TestReleaseOfAStateThatDoesNotParse(t *testing.T) {
	_, err := newMinter(t, "https://api.github.com").Release(context.Background(), grant.ReleaseRequest{State: "{", Presented: "ghs_x", ExpiresAt: time.Now().Add(time.Hour)})
	if err == nil || strings.Contains(err.Error(), "ghs_x") {
		t.Errorf("error %v", err)
	}
}
