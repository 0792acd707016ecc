package demo

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferry-broker/ferry/internal/client"
)

// printer writes the demo's narrative.
type printer struct{ w io.Writer }

func (p *printer) title(s string) { fmt.Fprintf(p.w, "\n%s\n%s\n", s, strings.Repeat("=", len(s))) }
func (p *printer) step(s string)  { fmt.Fprintf(p.w, "\n── %s\n", s) }
func (p *printer) line(format string, a ...any) {
	fmt.Fprintf(p.w, "   %s\n", fmt.Sprintf(format, a...))
}
func (p *printer) ok(format string, a ...any) {
	fmt.Fprintf(p.w, " ✔ %s\n", fmt.Sprintf(format, a...))
}
func (p *printer) refused(e *client.APIError) {
	fmt.Fprintf(p.w, " ✘ %d %s: %s\n", e.Status, e.Code, e.Description)
}

// parseUnverifiedAudience reads aud from a JWT so the demo can configure the
// verifier that then checks it properly.
func parseUnverifiedAudience(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", errors.New("demo: minted token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("demo: minted token payload: %w", err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("demo: minted token payload: %w", err)
	}
	switch a := c.Aud.(type) {
	case string:
		return a, nil
	case []any:
		if len(a) > 0 {
			if s, ok := a[0].(string); ok {
				return s, nil
			}
		}
	}
	return "", errors.New("demo: minted token has no audience")
}
