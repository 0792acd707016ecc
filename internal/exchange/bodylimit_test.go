package exchange_test

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// rawHeaders sends a request's headers and none of the body they announce,
// and reads the answer. The deadline is not a speed assertion: an answer
// that waits for the body never comes at all (httptest has no read
// timeout; the broker's is 15 s), so 5 s is a functional bound.
func rawHeaders(t *testing.T, h *harness, path, contentType string, length int, extra ...string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := "POST " + path + " HTTP/1.1\r\nHost: ferry\r\nContent-Type: " + contentType +
		"\r\nContent-Length: " + strconv.Itoa(length) + "\r\n"
	for _, e := range extra {
		if e != "" {
			head += e + "\r\n"
		}
	}
	_, err = conn.Write([]byte(head + "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body is outstanding: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// A body declared larger than the limit is refused from its headers: the
// broker must not wait for a body it will never read, or every such
// request holds a connection (and a goroutine) for the whole read timeout.
func TestADeclaredHugeBodyIsRefusedAtOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, tt := range []struct {
		path, contentType string
		length            int
		extra             string
	}{
		{"/v1/exchange", "application/json", 10_000_000, ""},
		{"/v1/token", "application/x-www-form-urlencoded", 10_000_000, ""},
		// Under net/http's own 256 KiB drain threshold, over the limit.
		{"/v1/exchange", "application/json", 100 << 10, ""},
		// A client waiting for 100 Continue (curl, for large bodies) gets
		// the 413 instead, not an invitation to send 10 MB.
		{"/v1/exchange", "application/json", 10_000_000, "Expect: 100-continue"},
	} {
		t.Run(tt.path+" "+strconv.Itoa(tt.length)+" "+tt.extra, func(t *testing.T) {
			resp := rawHeaders(t, h, tt.path, tt.contentType, tt.length, tt.extra)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", resp.StatusCode)
			}
			if !resp.Close {
				t.Error("the connection stays open for a body nobody will read; want Connection: close")
			}
		})
	}
	recs := h.auditRecords()
	if len(recs) != 4 {
		t.Fatalf("%d audit records, want the 4 refusals", len(recs))
	}
	for _, r := range recs {
		if r.Error != "request_too_large" {
			t.Errorf("audit record %+v, want request_too_large", r)
		}
	}
}

// A request refused before its body is read (rate limited here) is
// answered too, without waiting for the body it announced.
func TestARequestRefusedBeforeItsBodyIsReadIsAnsweredAtOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{rate: 0.001, burst: 1})
	h.exchange("artifacts", "x", nil) // spends the burst
	resp := rawHeaders(t, h, "/v1/exchange", "application/json", 10_000_000)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
}
