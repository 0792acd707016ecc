package main

import (
	"bufio"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-broker/ferry/internal/testsupport/ferryproc"
	"github.com/ferry-broker/ferry/internal/testsupport/issuers"
)

// `ferry serve` answers a request that declares a 10 MB body with 413 from
// its headers, on a connection that never sends the body. The deadline is
// a functional bound, not a speed assertion: the server's read timeout is
// 15 s, and an answer that waited for the body would come only after it.
func TestServeRefusesADeclaredHugeBodyBeforeItArrives(t *testing.T) {
	gh, gl := issuers.Start(t)
	srv := startServe(t, ferryproc.Config(t, repoPolicies(t), gh.URL(), gl.URL(), filepath.Join(t.TempDir(), "audit.log")), nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST /v1/exchange HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body is outstanding: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("got %d (close %v), want 413 and the connection closed", resp.StatusCode, resp.Close)
	}
}
