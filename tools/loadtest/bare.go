package main

import (
	"crypto"
	"encoding/json"
	"io"
	"net/http"

	jose "github.com/go-jose/go-jose/v4"
)

// bareServer is the reference: it reads the same request body, decodes it
// and checks the same RS256 signature with the issuer's key, and answers.
// It checks no claim, keeps no state and writes no log.
func bareServer(key crypto.PublicKey) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		var req struct {
			Policy string `json:"policy"`
			Token  string `json:"token"`
		}
		if err != nil || json.Unmarshal(body, &req) != nil {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		jws, err := jose.ParseSignedCompact(req.Token, []jose.SignatureAlgorithm{jose.RS256})
		if err == nil {
			_, err = jws.Verify(key)
		}
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_token"}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
}
