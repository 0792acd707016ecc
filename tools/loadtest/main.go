// Command loadtest measures `ferry serve` against a bare verify-only
// server on this machine, side by side, and prints requests per second,
// latency percentiles and the ratio to the bare server. It starts every
// process it needs on loopback (a GitHub-style OIDC issuer, an in-memory
// STS, a redis-server, the brokers), is bounded in requests and time, and
// stops by itself.
//
// The bare server decodes the same request body and verifies the same
// RS256 signature with the issuer's key, and does nothing else: no broker
// can answer for less. Rounds alternate between the bare server and each
// broker scenario on the same tokens, so both see the same machine load;
// the ratio of neighbouring rounds is what to read on a shared machine.
// Each broker round also reports, from the broker's /metrics, its CPU per
// request and how many audit records each fsync carried.
//
//	go run ./tools/loadtest -ferry bin/ferry
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"time"
)

func main() {
	o := options{}
	flag.StringVar(&o.ferry, "ferry", "bin/ferry", "the ferry binary to run (`make build` writes bin/ferry)")
	flag.IntVar(&o.conns, "conns", 16, "concurrent connections, each a closed loop of one request at a time")
	flag.DurationVar(&o.round, "round", 3*time.Second, "how long one round of one target lasts at most")
	flag.IntVar(&o.maxRequests, "requests", 6000, "the most requests one round sends")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per scenario; the median is reported")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "the whole run stops after this, whatever is left")
	flag.StringVar(&o.scenarios, "scenarios", "deny,bare-audit,token,bare-audit-sign,aws,token-redis,deny-10k", "scenarios to run, comma-separated")
	flag.StringVar(&o.audit, "audit", "file", "the brokers' audit log: file (fsynced, as in production) or stdout (no fsync, to see its share)")
	flag.Parse()
	if o.audit != "file" && o.audit != "stdout" {
		fmt.Fprintf(os.Stderr, "loadtest: -audit %q: want file or stdout\n", o.audit)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	fmt.Printf("ferry loadtest: %d connections, rounds of %s or %d requests, %d rounds; %d CPUs, %s\n",
		o.conns, o.round, o.maxRequests, o.rounds, runtime.NumCPU(), runtime.Version())
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

type options struct {
	ferry       string
	conns       int
	round       time.Duration
	maxRequests int
	rounds      int
	timeout     time.Duration
	scenarios   string
	audit       string
}
