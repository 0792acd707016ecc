package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/audit"
)

func signRS256(t *testing.T, key *rsa.PrivateKey) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(`{"iss":"https://token.actions.githubusercontent.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func post1(t *testing.T, srv *httptest.Server, body []byte) (int, string) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+"/v1/exchange", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(got)
}

// The durable reference answers only once its record is in the log, and
// refuses, as a broker would, when the log cannot take it.
func TestTheDurableReferenceRecordsEachRequestBeforeItAnswers(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	log := audit.New(&file, audit.Genesis)
	srv := httptest.NewServer(durableBareServer(key.Public(), log, nil))
	defer srv.Close()

	if status, body := post1(t, srv, exchangeBody("deploy", signRS256(t, key))); status != http.StatusOK || body != `{"ok":true}` {
		t.Fatalf("valid token: %d %s", status, body)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if status, _ := post1(t, srv, exchangeBody("deploy", signRS256(t, other))); status != http.StatusUnauthorized {
		t.Fatalf("token signed by another key: %d, want 401", status)
	}
	lines := strings.Split(strings.TrimSpace(file.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log holds %d lines, want one a request:\n%s", len(lines), file.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["decision"] != audit.Deny || rec["policy"] != "deploy" || rec["client_ip"] != "127.0.0.1" || rec["job_workflow_ref"] == nil {
		t.Errorf("record is not shaped like a broker's refusal: %s", lines[0])
	}
	if n := len(lines[0]); n < 650 || n > 800 {
		t.Errorf("record is %d bytes; a broker's for the deny scenario is about 735", n)
	}
	if c := readCounters(context.Background(), srv.Client(), srv.URL); c.records != 2 || c.commits != 2 {
		t.Errorf("metrics say %v records in %v commits, want 2 in 2", c.records, c.commits)
	}

	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	if status, body := post1(t, srv, exchangeBody("deploy", signRS256(t, key))); status != http.StatusServiceUnavailable {
		t.Fatalf("closed log: %d %s, want 503", status, body)
	}
}

// The signing reference answers a valid token with an ES256 token of its
// own, signed before the record, and signs nothing for a forged one.
func TestTheSigningReferenceAnswersWithAVerifiableToken(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, signing, err := newReferenceSigner()
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	srv := httptest.NewServer(durableBareServer(key.Public(), audit.New(&file, audit.Genesis), signer))
	defer srv.Close()

	status, body := post1(t, srv, exchangeBody("artifacts", signRS256(t, key)))
	var answer struct {
		OK    bool   `json:"ok"`
		Token string `json:"token"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil || !answer.OK {
		t.Fatalf("valid token: %d %s", status, body)
	}
	jws, err := jose.ParseSignedCompact(answer.Token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(signing.Public())
	if err != nil || !strings.Contains(string(payload), `"iss":"https://ferry.loadtest.example"`) {
		t.Errorf("answer's token: %s, %v", payload, err)
	}

	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if status, body := post1(t, srv, exchangeBody("artifacts", signRS256(t, other))); status != http.StatusUnauthorized || strings.Contains(body, "token\":") {
		t.Errorf("forged token: %d %s, want 401 and no token", status, body)
	}
	if n := strings.Count(file.String(), "\n"); n != 2 {
		t.Errorf("log holds %d records, want one a request", n)
	}
}
