package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ferry-broker/ferry/internal/claims"
)

// Report defaults.
const (
	DefaultReportWindow    = 30 * 24 * time.Hour
	DefaultRepeatThreshold = 10
	DefaultReportTop       = 10
)

// ReportOptions tunes Report. Zero values take the defaults.
type ReportOptions struct {
	// Policies are the names of the policies in force. Each one with no
	// allow in the window is reported dormant: a standing path to a
	// credential that nobody uses is one to remove.
	Policies []string
	// Window is how far back from Now the report looks (default 30 days).
	// Records newer than Now (clock skew) are included.
	Window time.Duration
	// Now ends the window (default: the current time).
	Now time.Time
	// Threshold: an identity asking for one policy more than this many times
	// within an hour, or one CI run asking more than this many times in all,
	// is reported as repeated (default 10).
	Threshold int
	// Top bounds the repeated-request and denial lists (default 10).
	Top int
	// Job names who asked (the repository or project) and in which CI run,
	// from a record's subject and identifying claims; by default the
	// subject, with no run. Which claims say so is the platform's
	// business: `ferry audit report` passes the platforms'.
	Job func(subject string, claims []claims.Pair) (who, run string)
}

// ReportResult is what `ferry audit report` shows.
type ReportResult struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Records int       `json:"records"` // records in the window
	Allows  int       `json:"allows"`
	Denies  int       `json:"denies"`
	// Releases counts release records, refused attempts included.
	Releases int `json:"releases"`
	// Skipped counts lines that could not be read as records at all.
	Skipped int `json:"skipped"`
	// ChainError is the first break in the hash chain ("" when intact): the
	// report still covers every readable record, but they may be forged.
	ChainError string `json:"chain_error,omitempty"`

	Policies      []PolicyUsage     `json:"policies"`
	Dormant       []DormantPolicy   `json:"dormant"`
	Repeated      []RepeatedRequest `json:"repeated"`
	RepeatedTotal int               `json:"repeated_total"` // before the Top cut
	Denials       []DenialGroup     `json:"denials"`
	DenialGroups  int               `json:"denial_groups"` // before the Top cut
	// DormancyChecked is false when no policy names were given: then
	// Dormant is empty because nothing was checked, not because all is used.
	DormancyChecked bool `json:"dormancy_checked"`

	// Lifecycle is, per policy, what became of the credentials granted in
	// the window (released early, left to expire) and how long jobs held
	// them against how long they were granted.
	Lifecycle []PolicyLifecycle `json:"lifecycle"`
	// Scopes counts the window's grants by scope entry (a GitHub token's
	// permissions), for kinds that record one.
	Scopes []ScopeUsage `json:"scopes"`
}

// PolicyUsage counts one policy's decisions in the window.
type PolicyUsage struct {
	Name      string    `json:"name"`
	Allows    int       `json:"allows"`
	Denies    int       `json:"denies"`
	LastAllow time.Time `json:"last_allow,omitzero"` // in the whole log
}

// DormantPolicy is a policy in force with no allow in the window.
type DormantPolicy struct {
	Name string `json:"name"`
	// LastAllow is the policy's last allow anywhere in the log; zero when it
	// was never used.
	LastAllow time.Time `json:"last_allow,omitzero"`
}

// Repeated-request kinds.
const (
	RepeatedPerHour = "per_hour" // one identity, one policy, many times in an hour
	RepeatedSameRun = "same_run" // one CI run, many requests
)

// RepeatedRequest is an identity or a CI run that asked unusually often:
// a retry loop, a leaked token being replayed, or a job that should cache its
// credential.
type RepeatedRequest struct {
	Kind     string    `json:"kind"`
	Identity string    `json:"identity"`         // repository, project path or subject
	Policy   string    `json:"policy,omitempty"` // per_hour only
	RunID    string    `json:"run_id,omitempty"` // same_run only: run_id or pipeline_id
	Count    int       `json:"count"`
	First    time.Time `json:"first"` // the busiest hour's first request, or the run's
	Last     time.Time `json:"last"`
}

// DenialGroup counts denials with one error code and reason.
type DenialGroup struct {
	Error    string    `json:"error"`
	Reason   string    `json:"reason"`
	Count    int       `json:"count"`
	Policies []string  `json:"policies,omitempty"`
	Last     time.Time `json:"last"`
}

// Report reads a log and summarises it: allows and denies per policy,
// dormant policies, repeated requests and denials grouped by error and
// reason. Lines that are not records are skipped and counted; a broken hash
// chain is noted in ChainError rather than stopping the report. An error is
// returned only when r cannot be read.
func Report(r io.Reader, opts ReportOptions) (*ReportResult, error) {
	if opts.Window <= 0 {
		opts.Window = DefaultReportWindow
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Threshold <= 0 {
		opts.Threshold = DefaultRepeatThreshold
	}
	if opts.Top <= 0 {
		opts.Top = DefaultReportTop
	}
	if opts.Job == nil {
		opts.Job = subjectOnly
	}
	res := &ReportResult{From: opts.Now.Add(-opts.Window).UTC(), To: opts.Now.UTC(), DormancyChecked: opts.Policies != nil}

	usage := map[string]*PolicyUsage{}
	use := func(name string) *PolicyUsage {
		u := usage[name]
		if u == nil {
			u = &PolicyUsage{Name: name}
			usage[name] = u
		}
		return u
	}
	type identityPolicy struct{ identity, policy string }
	type identityRun struct{ identity, run string }
	perHour := map[identityPolicy][]time.Time{}
	perRun := map[identityRun][]time.Time{}
	type denialKey struct{ err, reason string }
	denials := map[denialKey]*DenialGroup{}
	denialPolicies := map[denialKey]map[string]bool{}

	life := newLifecycle()
	prev := Genesis
	err := eachLine(r, func(n int, line []byte, broken string) error {
		if broken != "" {
			res.Skipped++
			res.noteChain(n, broken)
			return nil
		}
		f, hash, reason := checkLine(line)
		switch {
		case reason != "":
			res.noteChain(n, reason)
		case *f.Prev != prev:
			res.noteChain(n, "prev does not match the previous line's hash (line removed or reordered)")
		}
		prev = hash
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			res.Skipped++
			return nil
		}
		if rec.Decision == Allow && rec.Policy != "" {
			u := use(rec.Policy)
			if rec.Time.After(u.LastAllow) {
				u.LastAllow = rec.Time
			}
		}
		life.observe(&rec, !rec.Time.Before(res.From))
		if rec.Time.Before(res.From) {
			return nil
		}
		res.Records++
		switch rec.Decision {
		case Allow:
			res.Allows++
			if rec.Policy != "" {
				use(rec.Policy).Allows++
			}
		case Deny:
			res.Denies++
			if rec.Policy != "" {
				use(rec.Policy).Denies++
			}
			k := denialKey{rec.Error, rec.Reason}
			g := denials[k]
			if g == nil {
				g = &DenialGroup{Error: rec.Error, Reason: rec.Reason}
				denials[k] = g
				denialPolicies[k] = map[string]bool{}
			}
			g.Count++
			if rec.Time.After(g.Last) {
				g.Last = rec.Time
			}
			if rec.Policy != "" {
				denialPolicies[k][rec.Policy] = true
			}
		case Release:
			// A release is the end of a request counted already, not a
			// request of its own.
			res.Releases++
			return nil
		}
		id, run := opts.Job(rec.Subject, rec.Claims)
		if id == "" {
			return nil
		}
		ip := identityPolicy{id, rec.Policy}
		perHour[ip] = append(perHour[ip], rec.Time)
		if run != "" {
			ir := identityRun{id, run}
			perRun[ir] = append(perRun[ir], rec.Time)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit report: %w", err)
	}

	for _, name := range opts.Policies {
		use(name)
	}
	for _, u := range usage {
		res.Policies = append(res.Policies, *u)
	}
	slices.SortFunc(res.Policies, func(a, b PolicyUsage) int { return cmp.Compare(a.Name, b.Name) })
	for _, name := range dedupSorted(opts.Policies) {
		if u := usage[name]; u.Allows == 0 {
			res.Dormant = append(res.Dormant, DormantPolicy{Name: name, LastAllow: u.LastAllow})
		}
	}

	for k, times := range perHour {
		count, first, last := busiestHour(times)
		if count > opts.Threshold {
			res.Repeated = append(res.Repeated, RepeatedRequest{Kind: RepeatedPerHour, Identity: k.identity, Policy: k.policy, Count: count, First: first, Last: last})
		}
	}
	for k, times := range perRun {
		if len(times) > opts.Threshold {
			slices.SortFunc(times, time.Time.Compare)
			res.Repeated = append(res.Repeated, RepeatedRequest{Kind: RepeatedSameRun, Identity: k.identity, RunID: k.run, Count: len(times), First: times[0], Last: times[len(times)-1]})
		}
	}
	slices.SortFunc(res.Repeated, func(a, b RepeatedRequest) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Identity, b.Identity),
			cmp.Compare(a.Policy, b.Policy), cmp.Compare(a.RunID, b.RunID))
	})
	res.RepeatedTotal = len(res.Repeated)
	res.Repeated = res.Repeated[:min(len(res.Repeated), opts.Top)]

	for k, g := range denials {
		for p := range denialPolicies[k] {
			g.Policies = append(g.Policies, p)
		}
		slices.Sort(g.Policies)
		res.Denials = append(res.Denials, *g)
	}
	slices.SortFunc(res.Denials, func(a, b DenialGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Error, b.Error), cmp.Compare(a.Reason, b.Reason))
	})
	res.DenialGroups = len(res.Denials)
	res.Denials = res.Denials[:min(len(res.Denials), opts.Top)]
	res.Lifecycle, res.Scopes = life.result(opts.Now)
	return res, nil
}

func (res *ReportResult) noteChain(line int, reason string) {
	if res.ChainError == "" {
		res.ChainError = (&ChainError{Line: line, Reason: reason}).Error()
	}
}

// subjectOnly is the default Job: who asked is the token's subject.
func subjectOnly(subject string, _ []claims.Pair) (string, string) { return subject, "" }

// busiestHour returns the most requests in any one-hour span of times, and
// that span's first and last request.
func busiestHour(times []time.Time) (count int, first, last time.Time) {
	slices.SortFunc(times, time.Time.Compare)
	lo := 0
	for hi := range times {
		for times[hi].Sub(times[lo]) >= time.Hour {
			lo++
		}
		if n := hi - lo + 1; n > count {
			count, first, last = n, times[lo], times[hi]
		}
	}
	return count, first, last
}

func dedupSorted(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
