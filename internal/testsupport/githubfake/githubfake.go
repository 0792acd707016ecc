// Package githubfake is an in-process GitHub REST API for the github grant
// kind's tests: the calls a GitHub App makes to mint and delete
// installation tokens, answered in GitHub's own JSON. It checks the App
// JWT as GitHub does (RS256 signature against the App's public key, iss,
// iat and exp), refuses as GitHub refuses (404 where the App is not
// installed, 422 for a permission or repository the installation lacks,
// 401 for a bad credential), can be made to fail (a 5xx, a secondary rate
// limit) or go away, and records every request.
package githubfake

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Server is the fake API. URL is its root, to use as github_app.api_url.
type Server struct {
	URL string

	appID int64
	key   *rsa.PublicKey
	srv   *httptest.Server
	now   func() time.Time

	mu            sync.Mutex
	installations map[string]*Installation // by lower-case owner
	tokens        map[string]*Token
	requests      []Request
	failure       *Failure
	nextID        int64
}

// Installation is the App installed on one account.
type Installation struct {
	ID    int64
	Owner string
	// Repositories the installation can reach; nil is all of the owner's.
	Repositories []string
	// Permissions are what the App was granted there.
	Permissions map[string]string
	Suspended   bool
}

// Token is an installation token the fake minted.
type Token struct {
	Value          string
	InstallationID int64
	Owner          string
	Repositories   []string
	Permissions    map[string]string
	ExpiresAt      time.Time
	Revoked        bool
}

// Request is one call the fake answered.
type Request struct {
	Method, Path string
	// Auth is how it authenticated: "app" (a valid App JWT), "token" (an
	// installation token), "bad" or "none".
	Auth string
	// Body is the request body as sent.
	Body []byte
	// Status is what the fake answered.
	Status int
}

// Failure makes every call fail the same way until cleared.
type Failure struct {
	Status  int
	Message string
	// DocumentationURL is GitHub's; a secondary rate limit is told apart
	// by its ending in #secondary-rate-limits.
	DocumentationURL string
	RetryAfter       time.Duration
}

// SecondaryRateLimit is GitHub's answer to too many requests at once.
func SecondaryRateLimit(retryAfter time.Duration) *Failure {
	return &Failure{Status: http.StatusForbidden, RetryAfter: retryAfter,
		Message:          "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
		DocumentationURL: "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits"}
}

// Start runs the fake for the App appID, whose JWTs verify with key, until
// the test ends.
func Start(t testing.TB, appID int64, key *rsa.PublicKey) *Server {
	t.Helper()
	s := &Server{appID: appID, key: key, now: time.Now, installations: map[string]*Installation{}, tokens: map[string]*Token{}, nextID: 40000000}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the fake: GitHub unreachable.
func (s *Server) Close() { s.srv.Close() }

// Install installs the App on owner, for repos (nil: all of them) with
// perms.
func (s *Server) Install(owner string, repos []string, perms map[string]string) *Installation {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	in := &Installation{ID: s.nextID, Owner: owner, Repositories: repos, Permissions: perms}
	s.installations[strings.ToLower(owner)] = in
	return in
}

// Fail makes every call answer f until Fail(nil).
func (s *Server) Fail(f *Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = f
}

// Requests are the calls answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Token returns the minted token of that value.
func (s *Server) Token(value string) (Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[value]
	if !ok {
		return Token{}, false
	}
	return *t, true
}

// Tokens are every token minted, oldest first.
func (s *Server) Tokens() []Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ExpiresAt.Before(out[j].ExpiresAt) })
	return out
}

type ghError struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url"`
	Status           string `json:"status"`
}

const docs = "https://docs.github.com/rest/apps/apps"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Request{Method: r.Method, Path: r.URL.Path, Body: body}
	status, answer, header := s.route(r, body, &rec)
	rec.Status = status
	s.requests = append(s.requests, rec)
	for k, v := range header {
		w.Header()[k] = v
	}
	if answer == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(answer)
}

func fail(status int, msg, doc string) (int, any, http.Header) {
	return status, ghError{Message: msg, DocumentationURL: doc, Status: strconv.Itoa(status)}, nil
}

// route answers one request; the caller holds s.mu.
func (s *Server) route(r *http.Request, body []byte, rec *Request) (int, any, http.Header) {
	if f := s.failure; f != nil {
		st, a, _ := fail(f.Status, f.Message, f.DocumentationURL)
		h := http.Header{}
		if f.RetryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
		}
		rec.Auth = "none"
		return st, a, h
	}
	if r.Header.Get("Accept") != "application/vnd.github+json" && !strings.Contains(r.Header.Get("Accept"), "application/vnd.github") {
		return fail(http.StatusUnsupportedMediaType, "Unsupported 'Accept' header", "https://docs.github.com/rest")
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 4 && parts[0] == "repos" && parts[3] == "installation":
		if st, why := s.checkAppJWT(r, rec); why != "" {
			return fail(st, why, "https://docs.github.com/rest")
		}
		return s.repositoryInstallation(parts[1], parts[2])
	case r.Method == http.MethodPost && len(parts) == 4 && parts[0] == "app" && parts[1] == "installations" && parts[3] == "access_tokens":
		if st, why := s.checkAppJWT(r, rec); why != "" {
			return fail(st, why, "https://docs.github.com/rest")
		}
		return s.createToken(parts[2], body)
	case r.Method == http.MethodDelete && r.URL.Path == "/installation/token":
		tok := s.installationToken(r, rec)
		if tok == nil {
			return fail(http.StatusUnauthorized, "Bad credentials", "https://docs.github.com/rest")
		}
		tok.Revoked = true
		return http.StatusNoContent, nil, nil
	case r.Method == http.MethodGet && r.URL.Path == "/installation/repositories":
		tok := s.installationToken(r, rec)
		if tok == nil {
			return fail(http.StatusUnauthorized, "Bad credentials", "https://docs.github.com/rest")
		}
		repos := make([]any, len(tok.Repositories))
		for i, name := range tok.Repositories {
			repos[i] = repository(tok.Owner, name, int64(i))
		}
		return http.StatusOK, map[string]any{"total_count": len(repos), "repository_selection": "selected", "repositories": repos}, nil
	}
	return fail(http.StatusNotFound, "Not Found", "https://docs.github.com/rest")
}

// checkAppJWT verifies the App JWT as GitHub does, and says why it is
// refused.
func (s *Server) checkAppJWT(r *http.Request, rec *Request) (int, string) {
	rec.Auth = "bad"
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		rec.Auth = "none"
		return http.StatusUnauthorized, "A JSON web token could not be decoded"
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return http.StatusUnauthorized, "A JSON web token could not be decoded"
	}
	var c jwt.Claims
	if err := tok.Claims(s.key, &c); err != nil {
		return http.StatusUnauthorized, "A JSON web token could not be decoded"
	}
	now := s.now()
	switch {
	case c.Issuer != strconv.FormatInt(s.appID, 10):
		return http.StatusUnauthorized, "'Issuer' claim ('iss') must be an Integer"
	case c.IssuedAt == nil || c.IssuedAt.Time().After(now.Add(time.Second)):
		return http.StatusUnauthorized, "'Issued at' claim ('iat') must be an Integer representing a time in the past"
	case c.Expiry == nil || !c.Expiry.Time().After(now):
		return http.StatusUnauthorized, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	case c.Expiry.Time().After(now.Add(10 * time.Minute)):
		return http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future"
	}
	rec.Auth = "app"
	return 0, ""
}

// installationToken finds the live token a request authenticates with.
func (s *Server) installationToken(r *http.Request, rec *Request) *Token {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		raw, ok = strings.CutPrefix(r.Header.Get("Authorization"), "token ")
	}
	rec.Auth = "bad"
	t := s.tokens[raw]
	if !ok || t == nil || t.Revoked || !s.now().Before(t.ExpiresAt) {
		return nil
	}
	rec.Auth = "token"
	return t
}

func (s *Server) repositoryInstallation(owner, repo string) (int, any, http.Header) {
	in := s.installations[strings.ToLower(owner)]
	if in == nil || !in.reaches(repo) {
		return fail(http.StatusNotFound, "Not Found", docs+"#get-a-repository-installation-for-the-authenticated-app")
	}
	return http.StatusOK, s.installationJSON(in), nil
}

func (in *Installation) reaches(repo string) bool {
	if in.Repositories == nil {
		return true
	}
	for _, r := range in.Repositories {
		if strings.EqualFold(r, repo) {
			return true
		}
	}
	return false
}

func (s *Server) installationJSON(in *Installation) map[string]any {
	selection := "all"
	if in.Repositories != nil {
		selection = "selected"
	}
	return map[string]any{
		"id":                   in.ID,
		"client_id":            "Iv23lifake",
		"account":              map[string]any{"login": in.Owner, "id": 45678901, "type": "Organization"},
		"repository_selection": selection,
		"access_tokens_url":    fmt.Sprintf("%s/app/installations/%d/access_tokens", s.URL, in.ID),
		"repositories_url":     s.URL + "/installation/repositories",
		"html_url":             fmt.Sprintf("https://github.com/organizations/%s/settings/installations/%d", in.Owner, in.ID),
		"app_id":               s.appID,
		"app_slug":             "ferry",
		"target_id":            45678901,
		"target_type":          "Organization",
		"permissions":          in.Permissions,
		"events":               []string{},
		"created_at":           "2026-01-05T10:00:00Z",
		"updated_at":           "2026-01-05T10:00:00Z",
		"single_file_name":     nil,
	}
}

func (s *Server) createToken(id string, body []byte) (int, any, http.Header) {
	var in *Installation
	for _, i := range s.installations {
		if strconv.FormatInt(i.ID, 10) == id {
			in = i
		}
	}
	if in == nil {
		return fail(http.StatusNotFound, "Not Found", docs+"#create-an-installation-access-token-for-an-app")
	}
	if in.Suspended {
		return fail(http.StatusForbidden, "This installation has been suspended", docs+"#create-an-installation-access-token-for-an-app")
	}
	var req struct {
		Repositories  []string          `json:"repositories"`
		RepositoryIDs []int64           `json:"repository_ids"`
		Permissions   map[string]string `json:"permissions"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return fail(http.StatusBadRequest, "Problems parsing JSON", docs+"#create-an-installation-access-token-for-an-app")
		}
	}
	const doc = docs + "#create-an-installation-access-token-for-an-app"
	for name, level := range req.Permissions {
		if !granted(in.Permissions[name], level) {
			return fail(http.StatusUnprocessableEntity, "The permissions requested are not granted to this installation.", doc)
		}
	}
	for _, r := range req.Repositories {
		if !in.reaches(r) || strings.Contains(r, "/") {
			return fail(http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation.", doc)
		}
	}
	perms := req.Permissions
	if perms == nil {
		perms = in.Permissions // GitHub's default: everything the App has
	}
	repos := req.Repositories
	selection := "selected"
	if repos == nil {
		repos, selection = in.Repositories, "all"
	}
	t := &Token{Value: newToken(), InstallationID: in.ID, Owner: in.Owner, Repositories: repos, Permissions: perms,
		ExpiresAt: s.now().Add(time.Hour).UTC().Truncate(time.Second)}
	s.tokens[t.Value] = t
	repoJSON := make([]any, len(repos))
	for i, name := range repos {
		repoJSON[i] = repository(in.Owner, name, int64(i))
	}
	return http.StatusCreated, map[string]any{
		"token":                t.Value,
		"expires_at":           t.ExpiresAt.Format(time.RFC3339),
		"permissions":          perms,
		"repository_selection": selection,
		"repositories":         repoJSON,
	}, nil
}

// granted reports whether an installation with level have may grant want.
func granted(have, want string) bool {
	rank := map[string]int{"read": 1, "write": 2, "admin": 3}
	return rank[have] > 0 && rank[want] > 0 && rank[want] <= rank[have]
}

func repository(owner, name string, i int64) map[string]any {
	return map[string]any{
		"id":        892345671 + i,
		"node_id":   "R_kgDOfake" + strconv.FormatInt(i, 10),
		"name":      name,
		"full_name": owner + "/" + name,
		"private":   true,
		"owner":     map[string]any{"login": owner, "id": 45678901, "type": "Organization"},
		"html_url":  "https://github.com/" + owner + "/" + name,
	}
}

// newToken makes a token in GitHub's installation token format: ghs_ and
// 36 base62 characters.
func newToken() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 36)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[n.Int64()]
	}
	return "ghs_" + string(b)
}
