package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-broker/ferry/internal/client"
)

// cachedRequest is what a cached exchange needs to run again later, from a
// credential_process line.
type cachedRequest struct {
	url, policy, audience, tokenFile, duration string
}

func (r cachedRequest) refresh(cache string, stderr io.Writer) *client.Refresh {
	c := &client.Client{BaseURL: r.url}
	return &client.Refresh{
		Cache:  cache,
		Policy: r.policy,
		NextToken: func(ctx context.Context, spent func(string) bool) (string, error) {
			return client.NextToken(ctx, os.Getenv, r.tokenFile, r.audience, nil, spent)
		},
		Exchange: func(ctx context.Context, token string) (*client.Result, error) {
			res, err := c.Exchange(ctx, client.ExchangeRequest{Policy: r.policy, Token: token, Duration: r.duration})
			if err == nil {
				// Every credential a profile obtains, the first and each
				// refresh, is one for `ferry release` to end at job end.
				saveRelease(r.url, res, stderr)
			}
			return res, err
		},
		Warn: func(msg string) { fmt.Fprintf(stderr, "ferry exchange: %s\n", msg) },
	}
}

// cachedCredentialProcess is `--format credential-process --cache FILE`:
// what an AWS profile's credential_process runs on every SDK ask.
func cachedCredentialProcess(ctx context.Context, req cachedRequest, cache string, stdout, stderr io.Writer) int {
	cache, err := filepath.Abs(cache)
	if err != nil {
		fmt.Fprintf(stderr, "ferry exchange: --cache: %v\n", err)
		return exitUsage
	}
	e, err := req.refresh(cache, stderr).Credential(ctx)
	if err != nil {
		reportExchangeError(stderr, err)
		return exitFail
	}
	if err := json.NewEncoder(stdout).Encode(e.Credential); err != nil {
		fmt.Fprintf(stderr, "ferry exchange: %v\n", err)
		return exitFail
	}
	return exitOK
}

// writeAWSProfile is `--aws-profile NAME`: exchange now (so a refusal fails
// the job's setup, not a later command), seed the cache, and write a
// profile whose credential_process is this binary with --cache.
func writeAWSProfile(ctx context.Context, req cachedRequest, profile, cache string, stderr io.Writer) int {
	configFile := os.Getenv("AWS_CONFIG_FILE")
	if configFile == "" {
		fmt.Fprintln(stderr, "ferry exchange: --aws-profile writes into $AWS_CONFIG_FILE, which is not set: point it at a job-private file, e.g. export AWS_CONFIG_FILE=\"$(mktemp -d)/config\"")
		return exitUsage
	}
	if err := client.CheckProfileName(profile); err != nil {
		fmt.Fprintf(stderr, "ferry exchange: %v\n", err)
		return exitUsage
	}
	configFile, err := filepath.Abs(configFile)
	if err != nil {
		fmt.Fprintf(stderr, "ferry exchange: AWS_CONFIG_FILE: %v\n", err)
		return exitUsage
	}
	if cache == "" {
		cache = filepath.Join(filepath.Dir(configFile), "ferry-"+profile+".cache.json")
	}
	if cache, err = filepath.Abs(cache); err != nil {
		fmt.Fprintf(stderr, "ferry exchange: --cache: %v\n", err)
		return exitUsage
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "ferry exchange: find this binary for the credential_process line: %v\n", err)
		return exitFail
	}
	argv := []string{self, "exchange", "--url", req.url, "--policy", req.policy, "--audience", req.audience}
	if req.duration != "" {
		argv = append(argv, "--duration", req.duration)
	}
	if req.tokenFile != "" {
		tf, err := filepath.Abs(req.tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "ferry exchange: --token-file: %v\n", err)
			return exitUsage
		}
		argv = append(argv, "--token-file", tf)
	}
	argv = append(argv, "--format", "credential-process", "--cache", cache)
	line, err := client.CommandLine(argv)
	if err == nil {
		// Refused before any token is spent.
		err = client.CheckProfileOwner(configFile, profile, req.policy)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry exchange: %v\n", err)
		return exitFail
	}

	e, err := req.refresh(cache, stderr).Credential(ctx)
	if err != nil {
		reportExchangeError(stderr, err)
		return exitFail
	}
	if err := client.WriteProfile(configFile, profile, req.policy, line, ""); err != nil {
		fmt.Fprintf(stderr, "ferry exchange: %v (the credential of request %s was cached but no profile written)\n", err, e.RequestID)
		return exitFail
	}
	exp, _ := time.Parse(time.RFC3339, e.Credential.Expiration)
	fmt.Fprintf(stderr, "Ferry: policy %q granted AWS credentials into profile %s of %s, valid until %s (request %s), refreshed by its credential_process\n",
		req.policy, profile, configFile, exp.UTC().Format(time.RFC3339), e.RequestID)
	return exitOK
}

func reportExchangeError(stderr io.Writer, err error) {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Fprintf(stderr, "ferry exchange: refused: %v\n", apiErr)
		return
	}
	fmt.Fprintf(stderr, "ferry exchange: %v\n", err)
}
