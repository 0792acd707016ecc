package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ferry-broker/ferry/internal/mint/tokensign"
)

// runKeygen writes a new token signing key. It is a command of its own,
// rather than something serve does on first start, because replicas must
// share one key: a key each replica made for itself would sign tokens the
// others' JWKS does not list.
func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "ferry-signing.pem", "where to write the key (never overwritten)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ferry keygen [--out FILE]")
		fmt.Fprintln(stderr, "\nWrites a new ECDSA P-256 (ES256) key for token.signing_key, readable by its owner only.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageCode(err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	k, err := tokensign.GenerateKey()
	if err != nil {
		fmt.Fprintf(stderr, "ferry keygen: %v\n", err)
		return exitFail
	}
	if err := tokensign.WriteKeyFile(*out, k); err != nil {
		fmt.Fprintf(stderr, "ferry keygen: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "wrote %s key %s to %s\n", k.Alg, k.ID, *out)
	return exitOK
}
