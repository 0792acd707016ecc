package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/trust"
	"github.com/ferry-broker/ferry/internal/urlcheck"
)

// runAudit is `ferry audit verify|report FILE ...`.
func runAudit(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		auditUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(args[1:], stdout, stderr)
	case "report":
		return runAuditReport(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		auditUsage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "ferry audit: unknown subcommand %q\n\n", args[0])
	auditUsage(stderr)
	return exitUsage
}

func auditUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: ferry audit SUBCOMMAND FILE [flags]

Subcommands:
  verify FILE [--prev HASH] [--checkpoints LOG [--jwks FILE|URL]]
                                  check the log's hash chain; exit 1 naming the first broken line,
                                  and, with the broker's log, that no records were cut off the end
  report FILE [--policies DIR] [--window 720h] [--threshold 10] [--top 10] [--format table|json]
                                  dormant policies, repeated requests, denials by reason,
                                  credentials released early vs left to expire, time held vs granted
`)
}

// auditFlags parses args (flags before or after FILE) and returns FILE, or
// an exit code when parsing ended the command.
func auditFlags(fs *flag.FlagSet, args []string) (file string, code int, done bool) {
	pos, err := policyParseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return "", exitOK, true
	}
	if err != nil {
		return "", exitUsage, true
	}
	if len(pos) != 1 {
		fmt.Fprintf(fs.Output(), "%s: want exactly one audit log FILE, got %d arguments\n", fs.Name(), len(pos))
		fs.Usage()
		return "", exitUsage, true
	}
	return pos[0], 0, false
}

func runAuditVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prev := fs.String("prev", audit.Genesis, "the hash the log's first record must chain to (for a log that continues another)")
	cpLog := fs.String("checkpoints", "", "the broker's log (JSON lines; - for stdin): also fail when FILE is shorter than, or diverges from, any \"audit checkpoint\" in it")
	jwksFrom := fs.String("jwks", "", "with --checkpoints: a JWKS file or URL (the broker's /.well-known/jwks.json); every checkpoint must carry a signature by one of its keys")
	file, code, done := auditFlags(fs, args)
	if done {
		return code
	}
	if *jwksFrom != "" && *cpLog == "" {
		fmt.Fprintln(stderr, "ferry audit verify: --jwks checks checkpoint signatures: it needs --checkpoints LOG")
		return exitUsage
	}
	var cps []audit.Checkpoint
	var keys *jose.JSONWebKeySet
	if *cpLog != "" {
		var err error
		if cps, err = readCheckpointLog(*cpLog); err != nil {
			printErrors(stderr, "ferry audit verify: ", err)
			return exitFail
		}
		if len(cps) == 0 {
			fmt.Fprintf(stderr, "ferry audit verify: %s holds no audit checkpoint (a JSON line with \"msg\": %q): nothing to check the end of %s against\n", *cpLog, audit.CheckpointMsg, file)
			return exitFail
		}
		if *jwksFrom != "" {
			if keys, err = loadJWKS(*jwksFrom); err != nil {
				fmt.Fprintf(stderr, "ferry audit verify: --jwks: %v\n", err)
				return exitFail
			}
		}
	}

	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(stderr, "ferry audit verify: %v\n", err)
		return exitFail
	}
	defer f.Close()
	s, failures, err := audit.VerifyCheckpoints(f, *prev, cps, keys)
	code = exitOK
	if ce, ok := errors.AsType[*audit.ChainError](err); ok {
		fmt.Fprintf(stderr, "%s:%d: %s\n", file, ce.Line, ce.Reason)
		if ce.Incomplete {
			fmt.Fprintf(stderr, "%s: the %d complete records before it chain intact\n", file, s.Records)
		}
		code = exitFail
	} else if err != nil {
		fmt.Fprintf(stderr, "ferry audit verify: %v\n", err)
		return exitFail
	}
	const maxShown = 10
	for i, cf := range failures {
		if i == maxShown {
			fmt.Fprintf(stderr, "%s: … and %d more checkpoints fail\n", file, len(failures)-maxShown)
			break
		}
		fmt.Fprintf(stderr, "%s: %v\n", file, cf)
	}
	if len(failures) > 0 {
		code = exitFail
	}
	if code != exitOK {
		return code
	}

	fmt.Fprintf(stdout, "%s: %d records, chain intact\n", file, s.Records)
	if s.Records > 0 {
		releases := ""
		if s.Releases > 0 {
			releases = fmt.Sprintf(", %d release", s.Releases)
		}
		fmt.Fprintf(stdout, "%d allow, %d deny%s, %s .. %s\nlast hash %s (keep it elsewhere: it pins this history)\n",
			s.Allows, s.Denies, releases, s.First.Format(time.RFC3339), s.Last.Format(time.RFC3339), s.LastHash)
	}
	if len(cps) > 0 {
		latest := cps[0]
		signed := 0
		for _, cp := range cps {
			if cp.Count > latest.Count {
				latest = cp
			}
			if cp.Signature != "" {
				signed++
			}
		}
		fmt.Fprintf(stdout, "%d checkpoints hold, the furthest at %d records (%s, %s)\n",
			len(cps), latest.Count, latest.Time.UTC().Format(time.RFC3339), latest.Source)
		switch {
		case keys != nil:
			fmt.Fprintln(stdout, "every checkpoint's signature verified with the JWKS")
		case signed > 0:
			fmt.Fprintf(stdout, "%d checkpoints are signed; signatures not checked (pass --jwks FILE|URL)\n", signed)
		default:
			fmt.Fprintln(stdout, "checkpoints are unsigned (the broker has no token signing key)")
		}
	}
	return exitOK
}

// readCheckpointLog reads the checkpoints in the log at path, "-" for stdin.
func readCheckpointLog(path string) ([]audit.Checkpoint, error) {
	if path == "-" {
		return audit.ReadCheckpoints(os.Stdin, "stdin")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--checkpoints: %w", err)
	}
	defer f.Close()
	return audit.ReadCheckpoints(f, path)
}

// maxJWKSBytes bounds a JWKS read from a file or URL.
const maxJWKSBytes = 1 << 20

// loadJWKS reads a JWKS from a file, or from an https URL (http on
// loopback only), such as the broker's /.well-known/jwks.json.
func loadJWKS(from string) (*jose.JSONWebKeySet, error) {
	var data []byte
	if strings.HasPrefix(from, "https://") || strings.HasPrefix(from, "http://") {
		u, err := url.Parse(from)
		if err != nil || !urlcheck.Secure(u) {
			return nil, fmt.Errorf("%s: want an https URL (http on localhost only)", from)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, from, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch %s: %s", from, resp.Status)
		}
		if data, err = io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1)); err != nil {
			return nil, fmt.Errorf("fetch %s: %w", from, err)
		}
	} else {
		f, err := os.Open(from)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if data, err = io.ReadAll(io.LimitReader(f, maxJWKSBytes+1)); err != nil {
			return nil, err
		}
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", from, maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%s: not a JWKS: %w", from, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%s: the JWKS holds no keys", from)
	}
	return &set, nil
}

// printErrors prints each of a joined error's parts on its own line.
func printErrors(w io.Writer, prefix string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			printErrors(w, prefix, e)
		}
		return
	}
	fmt.Fprintf(w, "%s%v\n", prefix, err)
}

func runAuditReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry audit report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policies := fs.String("policies", "", "policy directory: report its policies with no allow in the window as dormant")
	window := fs.Duration("window", audit.DefaultReportWindow, "how far back to look")
	threshold := fs.Int("threshold", audit.DefaultRepeatThreshold, "report an identity asking for one policy more than this many times in an hour, or one run asking more than this many times")
	top := fs.Int("top", audit.DefaultReportTop, "how many repeated requests and denial groups to list")
	format := fs.String("format", "table", "table or json")
	file, code, done := auditFlags(fs, args)
	if done {
		return code
	}
	switch {
	case *format != "table" && *format != "json":
		fmt.Fprintf(stderr, "ferry audit report: --format must be table or json, not %q\n", *format)
		return exitUsage
	case *window <= 0:
		fmt.Fprintf(stderr, "ferry audit report: --window must be positive, not %s\n", *window)
		return exitUsage
	case *threshold <= 0 || *top <= 0:
		fmt.Fprintln(stderr, "ferry audit report: --threshold and --top must be positive")
		return exitUsage
	}

	platforms := registry.Platforms()
	opts := audit.ReportOptions{Window: *window, Threshold: *threshold, Top: *top,
		Job: func(subject string, c []claims.Pair) (string, string) {
			j := platforms.JobOfClaims(subject, c)
			return j.Who, j.Run
		}}
	if *policies != "" {
		set, err := trust.LoadDir(*policies, trust.LoadOptions{Kinds: registry.Kinds(), Platforms: platforms})
		if err != nil {
			fmt.Fprintf(stderr, "ferry audit report: load policies from %s:\n", *policies)
			policyPrintProblems(err, stderr)
			return exitFail
		}
		opts.Policies = []string{}
		for _, p := range set.Policies() {
			opts.Policies = append(opts.Policies, p.Name)
		}
	}

	f, err := os.Open(file)
	if err != nil {
		fmt.Fprintf(stderr, "ferry audit report: %v\n", err)
		return exitFail
	}
	defer f.Close()
	res, err := audit.Report(f, opts)
	if err != nil {
		fmt.Fprintf(stderr, "ferry audit report: %s: %v\n", file, err)
		return exitFail
	}

	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "ferry audit report: %v\n", err)
			return exitFail
		}
	} else {
		printAuditReport(stdout, file, res)
	}
	if res.ChainError != "" {
		// The counts above may rest on forged lines: say so, and fail.
		fmt.Fprintf(stderr, "ferry audit report: %s: hash chain broken at %s; run `ferry audit verify %s`\n", file, res.ChainError, file)
		return exitFail
	}
	return exitOK
}

func printAuditReport(w io.Writer, file string, res *audit.ReportResult) {
	const day = "2006-01-02 15:04 MST"
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(day)
	}
	fmt.Fprintf(w, "%s: %d records from %s to %s: %d allow, %d deny", safe(file), res.Records, when(res.From), when(res.To), res.Allows, res.Denies)
	if res.Skipped > 0 {
		fmt.Fprintf(w, " (%d unreadable lines skipped)", res.Skipped)
	}
	fmt.Fprintln(w)

	var rows []string
	for _, p := range res.Policies {
		rows = append(rows, fmt.Sprintf("%s\t%d\t%d\t%s", safe(p.Name), p.Allows, p.Denies, when(p.LastAllow)))
	}
	printTable(w, "Decisions per policy", "POLICY\tALLOWS\tDENIES\tLAST ALLOW", rows, "none")

	rows = nil
	for _, d := range res.Dormant {
		rows = append(rows, safe(d.Name)+"\t"+when(d.LastAllow))
	}
	dormantNone := "none"
	if !res.DormancyChecked {
		dormantNone = "not checked: pass --policies DIR"
	}
	printTable(w, "Dormant policies (no allow in the window)", "POLICY\tLAST ALLOW", rows, dormantNone)

	rows = nil
	for _, r := range res.Repeated {
		kind, what := "in one hour", "policy "+r.Policy
		if r.Kind == audit.RepeatedSameRun {
			kind, what = "in one run", "run "+r.RunID
		}
		rows = append(rows, fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s", r.Count, kind, safe(r.Identity), safe(what), when(r.First), when(r.Last)))
	}
	printTable(w, "Repeated requests"+shown(len(res.Repeated), res.RepeatedTotal), "COUNT\tKIND\tIDENTITY\tPOLICY / RUN\tFIRST\tLAST", rows, "none")

	rows = nil
	for _, d := range res.Denials {
		rows = append(rows, fmt.Sprintf("%d\t%s\t%s\t%s\t%s", d.Count, safe(d.Error), safe(d.Reason), safe(strings.Join(d.Policies, ",")), when(d.Last)))
	}
	printTable(w, "Denials by error and reason"+shown(len(res.Denials), res.DenialGroups), "COUNT\tERROR\tREASON\tPOLICIES\tLAST", rows, "none")
	printLifecycle(w, res) // audit_lifecycle.go
}

// printTable prints a titled, indented table of tab-separated rows, or
// the note empty when there are none.
func printTable(w io.Writer, title, header string, rows []string, empty string) {
	fmt.Fprintf(w, "\n%s\n", title)
	if len(rows) == 0 {
		fmt.Fprintf(w, "  %s\n", empty)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\n", header)
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\n", r)
	}
	tw.Flush()
}

// shown says how much of a cut list is printed.
func shown(n, total int) string {
	if n == total {
		return ""
	}
	return fmt.Sprintf(" (top %d of %d)", n, total)
}

// safe makes log text fit one table cell: reasons quote claim values a
// pipeline controls, so control characters (terminal escapes, tabs,
// newlines) are replaced and long text is cut.
func safe(s string) string {
	const maxCell = 100
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
	if r := []rune(s); len(r) > maxCell {
		s = string(r[:maxCell-1]) + "…"
	}
	return s
}
