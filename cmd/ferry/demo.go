package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ferry-broker/ferry/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policies := fs.String("policies", "", "policy directory (default ./trustpolicies, else the built-in examples)")
	if err := fs.Parse(args); err != nil {
		return usageCode(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ferry demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if err := demo.Run(ctx, demo.Options{Out: stdout, PoliciesDir: *policies, Logger: newLogger(stderr, "error")}); err != nil {
		fmt.Fprintf(stderr, "ferry demo: %v\n", err)
		return exitFail
	}
	return exitOK
}
