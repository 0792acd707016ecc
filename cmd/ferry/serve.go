package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime/debug"

	"github.com/ferry-broker/ferry/internal/broker"
	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/heapfloor"
	"github.com/ferry-broker/ferry/internal/memlimit"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: the embedded defaults)")
	listen := fs.String("listen", "", "address to listen on, overriding the config's listen")
	if err := fs.Parse(args); err != nil {
		return usageCode(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ferry serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	var cfg *config.Config
	var err error
	if *cfgPath == "" {
		cfg, err = config.Default()
	} else {
		cfg, err = config.Load(*cfgPath)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry serve: %v\n", err)
		return exitFail
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	logger := newLogger(stderr, cfg.LogLevel)
	if os.Getenv("GOGC") == "" { // an operator's GOGC is theirs to keep
		defer heapfloor.Keep(heapfloor.Default)()
	}
	cgroups, self := memlimit.System()
	memlimit.Apply(logger, os.Getenv, cgroups, self) // unless GOMEMLIMIT is set
	b, err := broker.New(ctx, cfg, broker.Options{Logger: logger, MemoryLimit: memoryLimit()})
	if err != nil {
		fmt.Fprintf(stderr, "ferry serve: %v\n", err)
		return exitFail
	}
	defer b.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "ferry serve: %v\n", err)
		return exitFail
	}
	if err := b.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "ferry serve: %v\n", err)
		return exitFail
	}
	return exitOK
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated with the config
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// memoryLimit is the runtime's memory limit, GOMEMLIMIT as set by the
// operator or from the cgroup above, or 0 when there is none.
func memoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}
