package main

import (
	"strings"
	"testing"
)

func TestPolicyBlastRadiusMermaid(t *testing.T) {
	r := runPolicyCmd("blast-radius", policyExamples, "--format", "mermaid")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "```mermaid\nflowchart LR\n") || !strings.HasSuffix(r.stdout, "```\n") {
		t.Fatalf("not a Markdown mermaid block:\n%s", r.stdout)
	}
	for _, want := range []string{
		`(["issuer github"])`,
		`{{"policy deploy-prod"}}`,
		`("aws<br/>arn:aws:iam::123456789012:role/deploy-prod")`,
		`⚠ widest: repository matches glob #34;acme/*#34;`,
		"-->|up to 15m|",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %s:\n%s", want, r.stdout)
		}
	}
	if r := runPolicyCmd("blast-radius", policyExamples, "--format", "dot"); r.code != 2 || !strings.Contains(r.stderr, "not table, json or mermaid") {
		t.Errorf("--format dot: exit %d, stderr %q; want a usage error", r.code, r.stderr)
	}
}
