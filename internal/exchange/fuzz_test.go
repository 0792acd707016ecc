package exchange

import (
	"errors"
	"strings"
	"testing"
)

func FuzzDecodeExchange(f *testing.F) {
	f.Add([]byte(`{"policy":"deploy-prod","token":"eyJ.a.b","duration":"15m"}`), "")
	f.Add([]byte(`{"policy":"p","duration":900}`), "Bearer eyJ.a.b")
	f.Add([]byte(`{"policy":"p","token":"SECRETTOKEN","duration":"forever"}`), "")
	f.Add([]byte(`{"policy":"p","token":"SECRETTOKEN"} trailing`), "")
	f.Add([]byte(`{"policy":1}`), "Basic abc")
	f.Add([]byte(`[]`), "")
	f.Add([]byte(`{"policy":"p","token":"a","token":"b"}`), "")
	f.Add([]byte(`{"policy":"p","token":"a","duration":1e308}`), "")
	f.Fuzz(func(t *testing.T, body []byte, auth string) {
		req, err := decodeExchange(body, auth)
		if err != nil {
			var bad *badRequest
			e := classify(err)
			if !errors.As(err, &bad) || e.Code != InvalidRequest || e.Description == "" {
				t.Fatalf("decode error is not a described invalid_request: %#v", err)
			}
			if strings.Contains(e.Description, "SECRETTOKEN") {
				t.Fatalf("error description echoes the token: %s", e.Description)
			}
			return
		}
		if req.Policy == "" || req.Token == "" {
			t.Fatalf("accepted a request without policy or token: %+v", req)
		}
		if req.Duration < 0 {
			t.Fatalf("accepted a negative duration %s", req.Duration)
		}
	})
}
