package client

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Formats lists the output formats of `ferry exchange`.
var Formats = []string{"json", "env", "credential-process", "github", "token"}

// Output writes a result in one of Formats. github appends to the file
// named by GITHUB_ENV (looked up in env) and masks every secret first.
func Output(w io.Writer, res *Result, format string, env Env) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case "env":
		for _, kv := range envVars(res) {
			if _, err := fmt.Fprintf(w, "export %s=%s\n", kv[0], shellQuote(kv[1])); err != nil {
				return err
			}
		}
		return nil
	case "credential-process":
		if res.AWS == nil {
			return errors.New("--format credential-process needs a policy with an aws grant")
		}
		return json.NewEncoder(w).Encode(credentialProcess{
			Version: 1, AccessKeyID: res.AWS.AccessKeyID, SecretAccessKey: res.AWS.SecretAccessKey,
			SessionToken: res.AWS.SessionToken, Expiration: res.AWS.Expiration.UTC().Format(time.RFC3339),
		})
	case "token":
		switch {
		case res.GCP != nil:
			_, err := fmt.Fprintln(w, res.GCP.AccessToken)
			return err
		case res.Token != nil:
			_, err := fmt.Fprintln(w, res.Token.Token)
			return err
		case res.GitHub != nil:
			_, err := fmt.Fprintln(w, res.GitHub.Token)
			return err
		}
		return errors.New("--format token needs a policy with a gcp, token or github grant")
	case "github":
		return githubEnv(w, res, env)
	}
	return fmt.Errorf("unknown format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// credentialProcess is the AWS SDKs' credential_process JSON.
type credentialProcess struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	SessionToken    string `json:"SessionToken"`
	Expiration      string `json:"Expiration"`
}

// envVars are the variables each cloud's own tools read.
func envVars(res *Result) [][2]string {
	var out [][2]string
	if a := res.AWS; a != nil {
		out = append(out,
			[2]string{"AWS_ACCESS_KEY_ID", a.AccessKeyID},
			[2]string{"AWS_SECRET_ACCESS_KEY", a.SecretAccessKey},
			[2]string{"AWS_SESSION_TOKEN", a.SessionToken},
			[2]string{"AWS_CREDENTIAL_EXPIRATION", a.Expiration.UTC().Format(time.RFC3339)})
	}
	if g := res.GCP; g != nil {
		out = append(out,
			[2]string{"CLOUDSDK_AUTH_ACCESS_TOKEN", g.AccessToken},
			[2]string{"GOOGLE_OAUTH_ACCESS_TOKEN", g.AccessToken})
	}
	if t := res.Token; t != nil {
		out = append(out, [2]string{"FERRY_TOKEN", t.Token})
	}
	if g := res.GitHub; g != nil {
		// What gh and most GitHub tooling read; GITHUB_TOKEN stays the
		// job's own.
		out = append(out, [2]string{"GH_TOKEN", g.Token})
	}
	return out
}

func secret(name string) bool {
	switch name {
	case "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN", "FERRY_TOKEN", "GH_TOKEN", "AWS_ACCESS_KEY_ID":
		return true
	}
	return false
}

// githubEnv does what aws-actions/configure-aws-credentials does: mask each
// secret in the log, then export it to later steps through $GITHUB_ENV.
func githubEnv(w io.Writer, res *Result, env Env) error {
	path := env("GITHUB_ENV")
	if path == "" {
		return errors.New("--format github needs GITHUB_ENV (it runs inside a GitHub Actions step)")
	}
	vars := envVars(res)
	for _, kv := range vars {
		if secret(kv[0]) {
			if err := addMask(w, kv[1]); err != nil {
				return err
			}
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open GITHUB_ENV: %w", err)
	}
	defer f.Close()
	var b strings.Builder
	for _, kv := range vars {
		// The heredoc form survives any value; the delimiter is random so a
		// value cannot end it early.
		delim := "ferry_" + randomHex()
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", kv[0], delim, kv[1], delim)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		return fmt.Errorf("write GITHUB_ENV: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write GITHUB_ENV: %w", err)
	}
	_, err = fmt.Fprintf(w, "Ferry: exported %d variables for policy %q, valid until %s\n", len(vars), res.Policy, res.ExpiresAt.UTC().Format(time.RFC3339))
	return err
}

// addMask registers s with the runner's log masker the way @actions/core's
// setSecret does. The runner masks log lines one at a time, so each line
// of s gets its own mask; a raw newline would also end the command early
// and print the rest of s to the log as ordinary output.
func addMask(w io.Writer, s string) error {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' })
	for _, line := range lines {
		forms := []string{line}
		if strings.Contains(line, "%") {
			// The toolkit escapes % as %25 and runners unescape it, but
			// not every runner version has: mask both readings, since
			// one extra mask hides nothing that matters.
			forms = append(forms, strings.ReplaceAll(line, "%", "%25"))
		}
		for _, f := range forms {
			if _, err := fmt.Fprintf(w, "::add-mask::%s\n", f); err != nil {
				return err
			}
		}
	}
	return nil
}

func randomHex() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
