package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ferry-broker/ferry/internal/claims"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/trust"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// policyDefaultDir is where pipeline owners keep their policies.
const policyDefaultDir = "./trustpolicies"

type policySubcommand struct {
	run     func(args []string, stdout, stderr io.Writer) int
	usage   string
	summary string
}

func policySubcommands() map[string]policySubcommand {
	return map[string]policySubcommand{
		"validate":     {runPolicyValidate, "validate [DIR]", "check every policy; FILE:LINE:COL: message for each problem"},
		"test":         {runPolicyTest, "test [DIR]", "run the policies' NAME.test.yaml cases"},
		"explain":      {runPolicyExplain, "explain --policy NAME --claims FILE.json [DIR]", "each condition: pass / fail and why"},
		"blast-radius": {runPolicyBlastRadius, "blast-radius [DIR] [--format table|json|mermaid]", "who can reach which credential, and risky shapes"},
	}
}

var policySubcommandOrder = []string{"validate", "test", "explain", "blast-radius"}

// runPolicy is `ferry policy SUBCOMMAND ...`.
func runPolicy(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		policyUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		policyUsage(stdout)
		return exitOK
	}
	sub, ok := policySubcommands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ferry policy: unknown subcommand %q\n\n", args[0])
		policyUsage(stderr)
		return exitUsage
	}
	return sub.run(args[1:], stdout, stderr)
}

func policyUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: ferry policy SUBCOMMAND [flags] [DIR]")
	fmt.Fprintf(w, "\nDIR is the policy directory, %s when omitted.\n\nSubcommands:\n", policyDefaultDir)
	subs := policySubcommands()
	for _, name := range policySubcommandOrder {
		fmt.Fprintf(w, "  %-50s %s\n", subs[name].usage, subs[name].summary)
	}
}

// policyFlags is the flag set every subcommand shares: the issuers to
// check policies against, and the directory as the one positional.
type policyFlags struct {
	fs      *flag.FlagSet
	issuers string
}

func newPolicyFlags(name string, stderr io.Writer) *policyFlags {
	pf := &policyFlags{fs: flag.NewFlagSet("ferry policy "+name, flag.ContinueOnError)}
	pf.fs.SetOutput(stderr)
	pf.fs.StringVar(&pf.issuers, "issuers", "", "comma-separated configured issuer names to check policies against (default: not checked)")
	return pf
}

// parse parses flags placed before or after DIR and returns DIR, or an
// exit code when parsing ended the command.
func (pf *policyFlags) parse(args []string) (dir string, code int, done bool) {
	pos, err := policyParseInterspersed(pf.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return "", exitOK, true
	}
	if err != nil {
		return "", exitUsage, true
	}
	switch len(pos) {
	case 0:
		return policyDefaultDir, 0, false
	case 1:
		return pos[0], 0, false
	}
	fmt.Fprintf(pf.fs.Output(), "%s: unexpected argument %q (one policy directory at most)\n", pf.fs.Name(), pos[1])
	return "", exitUsage, true
}

func (pf *policyFlags) options() trust.LoadOptions {
	var names []string
	if pf.issuers != "" {
		names = []string{}
		for _, n := range strings.Split(pf.issuers, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	return trust.LoadOptions{Issuers: names, Kinds: registry.Kinds(), Platforms: registry.Platforms()}
}

// policyParseInterspersed lets flags follow positional arguments, as in
// `ferry policy blast-radius ./policies --format json`. Everything after
// "--" is positional.
func policyParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// policyLoad loads dir, printing every problem; ok is false when there
// were any.
func policyLoad(dir string, opts trust.LoadOptions, stderr io.Writer) (*trust.Set, bool) {
	set, err := trust.LoadDir(dir, opts)
	if err != nil {
		policyPrintProblems(err, stderr)
		return nil, false
	}
	return set, true
}

func policyPrintProblems(err error, w io.Writer) {
	var le *trust.LoadError
	if errors.As(err, &le) {
		for _, p := range le.Problems {
			fmt.Fprintln(w, p.String())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func runPolicyValidate(args []string, stdout, stderr io.Writer) int {
	pf := newPolicyFlags("validate", stderr)
	dir, code, done := pf.parse(args)
	if done {
		return code
	}
	set, ok := policyLoad(dir, pf.options(), stderr)
	if !ok {
		return exitFail
	}
	fmt.Fprintf(stdout, "%d policies OK\n", set.Len())
	return exitOK
}

func runPolicyTest(args []string, stdout, stderr io.Writer) int {
	pf := newPolicyFlags("test", stderr)
	dir, code, done := pf.parse(args)
	if done {
		return code
	}
	set, ok := policyLoad(dir, pf.options(), stderr)
	if !ok {
		return exitFail
	}
	results, err := trust.RunTests(dir, set)
	failed := 0
	tested := map[string]bool{}
	for _, r := range results {
		tested[r.Policy] = true
		if r.Passed {
			fmt.Fprintf(stdout, "PASS  %s: %s\n", r.Policy, r.Case)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s: %s\n      %s:%d:%d: %s\n", r.Policy, r.Case, r.File, r.Line, r.Col, r.Message)
	}
	if err != nil {
		policyPrintProblems(err, stderr)
	}
	for _, p := range set.Policies() {
		if !tested[p.Name] {
			fmt.Fprintf(stdout, "note: policy %s has no test cases (add %s)\n", p.Name, strings.TrimSuffix(strings.TrimSuffix(p.File(), ".yaml"), ".yml")+".test.yaml")
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 || err != nil {
		return exitFail
	}
	return exitOK
}

func runPolicyExplain(args []string, stdout, stderr io.Writer) int {
	pf := newPolicyFlags("explain", stderr)
	name := pf.fs.String("policy", "", "the policy to explain (required)")
	claimsFile := pf.fs.String("claims", "", "a JSON file holding the token's claims, e.g. a decoded JWT payload (required)")
	issuer := pf.fs.String("issuer", "", "the configured issuer name the token came from (default: the policy's issuer)")
	dir, code, done := pf.parse(args)
	if done {
		return code
	}
	if *name == "" || *claimsFile == "" {
		fmt.Fprintln(stderr, "ferry policy explain: --policy and --claims are required")
		return exitUsage
	}
	data, err := os.ReadFile(*claimsFile)
	if err != nil {
		fmt.Fprintf(stderr, "ferry policy explain: read claims: %v\n", err)
		return exitFail
	}
	cs, err := claims.Parse(data)
	if err == nil {
		err = registry.Platforms().Check(cs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry policy explain: %s: %v\n", *claimsFile, err)
		return exitFail
	}
	set, ok := policyLoad(dir, pf.options(), stderr)
	if !ok {
		return exitFail
	}
	p, ok := set.Lookup(*name)
	if !ok {
		fmt.Fprintf(stderr, "ferry policy explain: unknown policy %q in %s\n", *name, dir)
		return exitFail
	}
	is := *issuer
	if is == "" {
		is = p.Issuer
	}

	fmt.Fprintf(stdout, "policy %s (%s), token from issuer %s\n", p.Name, p.File(), is)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, c := range p.Explain(is, cs) {
		verdict := "PASS"
		if !c.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", verdict, c.Rule, c.Detail)
	}
	_ = tw.Flush()

	d := set.Decide(is, p.Name, cs)
	if d.Allowed {
		fmt.Fprintf(stdout, "allowed: %s\n", d.Reason)
		return exitOK
	}
	fmt.Fprintf(stdout, "denied by %s: %s\n", d.Rule, d.Reason)
	return exitFail
}

func runPolicyBlastRadius(args []string, stdout, stderr io.Writer) int {
	pf := newPolicyFlags("blast-radius", stderr)
	format := pf.fs.String("format", "table", "output: table | json | mermaid (a Markdown ```mermaid graph for a pull request comment)")
	dir, code, done := pf.parse(args)
	if done {
		return code
	}
	if *format != "table" && *format != "json" && *format != "mermaid" {
		fmt.Fprintf(stderr, "ferry policy blast-radius: --format %q is not table, json or mermaid\n", *format)
		return exitUsage
	}
	set, ok := policyLoad(dir, pf.options(), stderr)
	if !ok {
		return exitFail
	}
	if *format == "mermaid" {
		fmt.Fprint(stdout, trust.BlastMermaid(set))
		return exitOK
	}
	exposures := trust.BlastRadius(set)
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(exposures); err != nil {
			fmt.Fprintf(stderr, "ferry policy blast-radius: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	policyWriteBlastTable(stdout, exposures)
	return exitOK
}

// policyWriteBlastTable prints a one-line-per-policy summary, then each
// policy's reach, deny rules and warnings in full.
func policyWriteBlastTable(w io.Writer, exposures []trust.Exposure) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tISSUER\tGRANT\tCREDENTIAL\tMAX\tWARNINGS")
	for _, e := range exposures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", e.Policy, e.Issuer, e.Grant, e.Credential, yamlpos.FormatDuration(e.MaxDuration), len(e.Warnings))
	}
	_ = tw.Flush()
	for _, e := range exposures {
		fmt.Fprintf(w, "\n%s (%s)\n", e.Policy, e.File)
		fmt.Fprintf(w, "  reachable by %s tokens where:\n", e.Issuer)
		for _, s := range e.Who {
			fmt.Fprintf(w, "    %s\n", s)
		}
		if len(e.Deny) > 0 {
			fmt.Fprintln(w, "  refused when:")
			for _, s := range e.Deny {
				fmt.Fprintf(w, "    %s\n", s)
			}
		}
		fmt.Fprintf(w, "  grants %s %s for up to %s\n", e.Grant, e.Credential, yamlpos.FormatDuration(e.MaxDuration))
		for _, s := range e.Narrowing {
			fmt.Fprintf(w, "    narrowed by %s\n", s)
		}
		for _, s := range e.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", s)
		}
	}
}
