package exchange

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func FuzzDecodeRelease(f *testing.F) {
	f.Add([]byte(`{"request_id":"01JABC","release_token":"SECRETTOKEN"}`))
	f.Add([]byte(`{"request_id":"01JABC","release_token":"SECRETTOKEN","token":"ghs_SECRETTOKEN"}`))
	f.Add([]byte(`{"request_id":"01JABC","release_token":"SECRETTOKEN","request_id":"x"}`))
	f.Add([]byte(`{"Request_Id":"01JABC","release_token":"SECRETTOKEN"}`))
	f.Add([]byte(`{"request_id":"01JABC","release_token":"SECRETTOKEN"} {}`))
	f.Add([]byte(`{"request_id":null,"release_token":["SECRETTOKEN"]}`))
	f.Add([]byte(`{"request_id":"01JABC","release_token":"SECRETTOKEN","eyJhbGciOiJFUzI1NiJ9.SECRETTOKEN.c2ln":1}`))
	f.Add([]byte(`{"request_id":"\u0000","release_token":"\ud800"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRelease(body)
		if err != nil {
			var bad *badRequest
			e := classify(err)
			if !errors.As(err, &bad) || e.Code != InvalidRequest || e.Description == "" {
				t.Fatalf("decode error is not a described invalid_request: %#v", err)
			}
			if strings.Contains(e.Description, "SECRETTOKEN") {
				t.Fatalf("error description echoes a secret: %s", e.Description)
			}
			return
		}
		if req.RequestID == "" || req.ReleaseToken == "" || len(req.RequestID) > maxRequestIDLen || len(req.ReleaseToken) > maxReleaseTokenLen {
			t.Fatalf("accepted a release without a fitting request_id or release_token: %+v", req)
		}
		// Whatever it accepted is one JSON object whose every member is
		// a contract field spelt exactly, once.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted a body encoding/json rejects: %v", err)
		}
		for k := range m {
			switch k {
			case "request_id", "release_token", "token":
			default:
				t.Fatalf("accepted member %q", k)
			}
		}
	})
}
