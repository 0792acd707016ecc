// Command ferry is the Ferry credential broker and its command-line tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes of the contract.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type command struct {
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	summary string
}

func commands() map[string]command {
	return map[string]command{
		"serve":    {runServe, "run the broker"},
		"demo":     {runDemo, "the whole flow on this machine, no cloud account needed"},
		"exchange": {runExchange, "exchange this job's CI token for a credential"},
		"release":  {runRelease, "end this job's credentials at the broker (the job's last step)"},
		"keygen":   {runKeygen, "write a new signing key for Ferry-signed tokens"},
		"policy":   {runPolicy, "validate, test, explain and size up trust policies"},
		"audit":    {runAudit, "verify and report on the audit log"},
		"version":  {runVersion, "print the version"},
	}
}

var order = []string{"serve", "demo", "exchange", "release", "policy", "audit", "keygen", "version"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ferry: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Ferry exchanges a CI job's OIDC token for short-lived cloud credentials.")
	fmt.Fprintln(w, "\nUsage: ferry COMMAND [flags]")
	fmt.Fprintln(w, "\nCommands:")
	cmds := commands()
	for _, name := range order {
		fmt.Fprintf(w, "  %-9s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'ferry COMMAND -h' for a command's flags.")
}

// usageCode is the exit code for a flag parse error: asking for help
// succeeds, anything else is a usage error.
func usageCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}
