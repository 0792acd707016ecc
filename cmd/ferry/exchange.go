package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/ferry-broker/ferry/internal/client"
)

func runExchange(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry exchange", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerURL := fs.String("url", os.Getenv("FERRY_URL"), "broker URL (default $FERRY_URL)")
	policy := fs.String("policy", os.Getenv("FERRY_POLICY"), "trust policy name (default $FERRY_POLICY)")
	audience := fs.String("audience", envOr("FERRY_AUDIENCE", "ferry"), "audience to request the GitHub Actions token for")
	tokenFile := fs.String("token-file", "", `read the CI token from this file ("-" for stdin) instead of the job's environment`)
	duration := fs.String("duration", "", "credential lifetime, at most the policy's (e.g. 15m)")
	format := fs.String("format", "json", "output: "+strings.Join(client.Formats, " | ")+`
  json                the broker's answer
  env                 export lines: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
                      CLOUDSDK_AUTH_ACCESS_TOKEN and GOOGLE_OAUTH_ACCESS_TOKEN (gcloud), FERRY_TOKEN
  credential-process  AWS's credential_process JSON
  github              mask the secrets and append the env variables to $GITHUB_ENV
  token               the raw GCP access token or Ferry-signed token`)
	cache := fs.String("cache", "", "with --format credential-process: hand back the credential cached in this file while it has more\n"+
		"than min(15m, half its lifetime) left, and exchange only after (one grant per lifetime, not per AWS command);\n"+
		"with --aws-profile: where the profile keeps its cache (default: beside $AWS_CONFIG_FILE)")
	awsProfile := fs.String("aws-profile", "", "exchange now, then write a profile of this name into $AWS_CONFIG_FILE whose\n"+
		"credential_process refreshes the credential through a cache beside that file")
	if err := fs.Parse(args); err != nil {
		return usageCode(err)
	}
	formatSet := false
	fs.Visit(func(f *flag.Flag) { formatSet = formatSet || f.Name == "format" })
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "ferry exchange: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	case *brokerURL == "":
		fmt.Fprintln(stderr, "ferry exchange: --url (or FERRY_URL) is required")
		return exitUsage
	case *policy == "":
		fmt.Fprintln(stderr, "ferry exchange: --policy (or FERRY_POLICY) is required")
		return exitUsage
	case !slices.Contains(client.Formats, *format):
		fmt.Fprintf(stderr, "ferry exchange: --format %q is not one of %s\n", *format, strings.Join(client.Formats, ", "))
		return exitUsage
	case *cache != "" && *format != "credential-process" && *awsProfile == "":
		fmt.Fprintln(stderr, "ferry exchange: --cache is for --format credential-process (or --aws-profile)")
		return exitUsage
	case *tokenFile == "-" && (*cache != "" || *awsProfile != ""):
		fmt.Fprintln(stderr, "ferry exchange: a cached exchange runs again later, from a credential_process: give --token-file a file, not -")
		return exitUsage
	case *awsProfile != "" && formatSet:
		fmt.Fprintln(stderr, "ferry exchange: --aws-profile writes a profile and prints nothing; leave out --format")
		return exitUsage
	case *format == "github" && os.Getenv("GITHUB_ENV") == "":
		// Checked before the exchange spends the job's token.
		fmt.Fprintln(stderr, "ferry exchange: --format github needs GITHUB_ENV (it runs inside a GitHub Actions step)")
		return exitUsage
	}

	req := cachedRequest{url: *brokerURL, policy: *policy, audience: *audience, tokenFile: *tokenFile, duration: *duration}
	switch {
	case *awsProfile != "":
		return writeAWSProfile(ctx, req, *awsProfile, *cache, stderr)
	case *cache != "":
		return cachedCredentialProcess(ctx, req, *cache, stdout, stderr)
	}

	var token string
	var err error
	if *tokenFile != "" {
		token, err = client.ReadTokenFile(*tokenFile, os.Stdin)
	} else {
		token, err = client.FindToken(ctx, os.Getenv, *audience, nil)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry exchange: %v\n", err)
		return exitFail
	}
	c := &client.Client{BaseURL: *brokerURL}
	res, err := c.Exchange(ctx, client.ExchangeRequest{Policy: *policy, Token: token, Duration: *duration})
	if err != nil {
		var apiErr *client.APIError
		if errors.As(err, &apiErr) {
			fmt.Fprintf(stderr, "ferry exchange: refused: %v\n", apiErr)
		} else {
			fmt.Fprintf(stderr, "ferry exchange: %v\n", err)
		}
		return exitFail
	}
	if err := client.Output(stdout, res, *format, os.Getenv); err != nil {
		fmt.Fprintf(stderr, "ferry exchange: %v (the credential of request %s was not printed; it expires by itself)\n", err, res.RequestID)
		return exitFail
	}
	saveRelease(*brokerURL, res, stderr) // release.go: for `ferry release` at job end
	return exitOK
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
