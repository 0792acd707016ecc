package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
	"github.com/ferry-broker/ferry/internal/mint/awssts"
	"github.com/ferry-broker/ferry/internal/mint/gcpiam"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// printLifecycle is the report's part on release at job end: what became
// of each policy's credentials, how long jobs held them against how long
// they were granted, and the scopes granted.
func printLifecycle(w io.Writer, res *audit.ReportResult) {
	var rows, flags []string
	for _, p := range res.Lifecycle {
		held, granted, longest := "-", "-", "-"
		if p.ReleasedEarly+p.LeftToExpire > 0 {
			held, granted, longest = secs(p.MedianHeldSeconds), secs(p.MedianGrantedSeconds), secs(p.LongestHeldSeconds)
		}
		rows = append(rows, fmt.Sprintf("%s\t%d\t%d (%d revoked)\t%d\t%d\t%s\t%s\t%s",
			safe(p.Name), p.Grants, p.ReleasedEarly, p.Revoked, p.LeftToExpire, p.Live, held, granted, longest))
		if p.TooLong {
			flags = append(flags, tooLong(p, held, granted, longest))
		}
	}
	printTable(w, "Credential lifetimes per policy (grants in the window)",
		"POLICY\tGRANTS\tRELEASED EARLY\tLEFT TO EXPIRE\tLIVE\tMEDIAN HELD\tMEDIAN GRANTED\tLONGEST HELD", rows, "no grants")
	for _, f := range flags {
		fmt.Fprintf(w, "  ! %s\n", f)
	}

	rows = nil
	for _, s := range res.Scopes {
		rows = append(rows, fmt.Sprintf("%s\t%s\t%d\t%s", safe(s.Kind), safe(s.Scope), s.Grants, safe(strings.Join(s.Policies, ","))))
	}
	printTable(w, "Scopes granted (GitHub tokens by permission)", "KIND\tSCOPE\tGRANTS\tPOLICIES", rows, "none recorded")
}

// kindFloor is the shortest lifetime each kind can grant: a policy
// already there cannot be shortened, only released at job end.
func kindFloor(kind string) time.Duration {
	switch kind {
	case awssts.KindName:
		return awssts.MinDuration
	case gcpiam.KindName:
		return gcpiam.MinLifetime
	case tokensign.KindName:
		return tokensign.MinGrantLifetime
	}
	return 0
}

func tooLong(p audit.PolicyLifecycle, held, granted, longest string) string {
	s := fmt.Sprintf("%s: jobs hold a median %s of the %s granted (longest %s): its duration is too long", safe(p.Name), held, granted, longest)
	floor := kindFloor(p.Kind)
	suggested := time.Duration(p.SuggestedSeconds) * time.Second
	switch {
	case floor > 0 && time.Duration(p.MedianGrantedSeconds)*time.Second <= floor:
		s += fmt.Sprintf("; %s credentials last at least %s, so end them at job end instead (ferry release", p.Kind, yamlpos.FormatDuration(floor))
		if p.Kind == awssts.KindName {
			s += " with revoke_on_release: true"
		}
		s += ")"
	default:
		s += fmt.Sprintf("; about %s would do", yamlpos.FormatDuration(max(suggested, floor)))
	}
	if p.ReleasedEarly > 0 {
		s += fmt.Sprintf(" [%d of %d grants were released early, %d of them revoked]", p.ReleasedEarly, p.Grants, p.Revoked)
	}
	return s
}

func secs(n int64) string { return yamlpos.FormatDuration(time.Duration(n) * time.Second) }
