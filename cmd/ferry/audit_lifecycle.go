package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferry-broker/ferry/internal/audit"
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
			flags = append(flags, fmt.Sprintf("%s: jobs hold a median %s of the %s granted (longest %s): its duration is too long; about %s would do",
				safe(p.Name), held, granted, longest, secs(p.SuggestedSeconds)))
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

func secs(n int64) string { return yamlpos.FormatDuration(time.Duration(n) * time.Second) }
