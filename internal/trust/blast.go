package trust

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Exposure is one policy's blast radius: who can reach which credential,
// for how long, and what about the policy's shape is risky.
type Exposure struct {
	Policy      string
	File        string
	Issuer      string
	Who         []string // the match conditions, e.g. `ref = "refs/heads/main"`
	Deny        []string // the deny blocks, e.g. `event_name = "pull_request_target"`
	Grant       string   // aws | gcp | token
	Credential  string   // role ARN, service account or audience
	Narrowing   []string // what narrows the credential: session policy, tags, boundary, scopes
	MaxDuration time.Duration
	Warnings    []string
}

// MarshalJSON writes snake_case keys and the duration as text ("15m").
func (e Exposure) MarshalJSON() ([]byte, error) {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return json.Marshal(struct {
		Policy      string   `json:"policy"`
		File        string   `json:"file"`
		Issuer      string   `json:"issuer"`
		Who         []string `json:"who"`
		Deny        []string `json:"deny"`
		Grant       string   `json:"grant"`
		Credential  string   `json:"credential"`
		Narrowing   []string `json:"narrowing"`
		MaxDuration string   `json:"max_duration"`
		MaxSeconds  int64    `json:"max_duration_seconds"`
		Warnings    []string `json:"warnings"`
	}{e.Policy, e.File, e.Issuer, nonNil(e.Who), nonNil(e.Deny), e.Grant, e.Credential, nonNil(e.Narrowing),
		FormatDuration(e.MaxDuration), int64(e.MaxDuration / time.Second), nonNil(e.Warnings)})
}

// BlastRadius describes every policy of the set, sorted by name.
func BlastRadius(set *Set) []Exposure {
	ps := set.Policies()
	out := make([]Exposure, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.exposure())
	}
	return out
}

func (p *Policy) exposure() Exposure {
	e := Exposure{Policy: p.Name, File: p.File, Issuer: p.Issuer, Grant: p.Grant.Type(), MaxDuration: p.Grant.MaxDuration()}
	for _, c := range p.match {
		e.Who = append(e.Who, c.String())
	}
	for i := range p.deny {
		e.Deny = append(e.Deny, p.deny[i].String())
	}
	switch g := p.Grant; {
	case g.AWS != nil:
		e.Credential = g.AWS.RoleARN
		if g.AWS.SessionPolicy != "" {
			e.Narrowing = append(e.Narrowing, "session policy "+g.AWS.SessionPolicy)
		}
		if len(g.AWS.SessionTags) > 0 {
			e.Narrowing = append(e.Narrowing, "session tags "+strings.Join(g.AWS.SessionTags, ", "))
		}
	case g.GCP != nil:
		e.Credential = g.GCP.ServiceAccount
		e.Narrowing = append(e.Narrowing, "scopes "+strings.Join(g.GCP.Scopes, ", "))
		if len(g.GCP.Delegates) > 0 {
			e.Narrowing = append(e.Narrowing, "via delegates "+strings.Join(g.GCP.Delegates, ", "))
		}
		for _, r := range g.GCP.AccessBoundary {
			e.Narrowing = append(e.Narrowing, fmt.Sprintf("access boundary %s on %s", strings.Join(r.AvailablePermissions, ", "), r.AvailableResource))
		}
	case g.Token != nil:
		e.Credential = g.Token.Audience
		if len(g.Token.Claims) > 0 {
			e.Narrowing = append(e.Narrowing, "copies claims "+strings.Join(g.Token.Claims, ", "))
		}
	}
	e.Warnings = p.warnings()
	return e
}

// Claim values the risk checks probe the policy with.
const (
	probePullRequestRef = "refs/pull/1/merge"
	gitlabMergeRequest  = "merge_request_event"
)

// warnings flags policy shapes that widen who can reach the credential.
func (p *Policy) warnings() []string {
	var w []string
	cond := map[string]*condition{}
	for _, c := range p.match {
		cond[c.claim] = c
	}
	github := cond["repository"] != nil || cond["repository_id"] != nil || cond["repository_owner"] != nil || cond["repository_owner_id"] != nil
	gitlab := cond["project_path"] != nil || cond["project_id"] != nil || cond["namespace_path"] != nil || cond["namespace_id"] != nil ||
		strings.Contains(p.Issuer, "gitlab")

	for _, c := range p.match {
		if identityKeys[c.claim] && !c.exact() {
			w = append(w, fmt.Sprintf("%s: every repository or project this pattern matches, including ones created later, can reach it", c.String()))
		}
	}
	if c := cond["repository"]; c != nil && c.exact() && cond["repository_id"] == nil {
		w = append(w, "repository is pinned by name only: pin repository_id too, so a deleted and re-created repository of the same name cannot reach it")
	}
	if c := cond["project_path"]; c != nil && c.exact() && cond["project_id"] == nil {
		w = append(w, "project_path is pinned by path only: pin project_id too, so a re-created project of the same path cannot reach it")
	}

	ref := cond["ref"]
	switch {
	case ref == nil && cond["ref_path"] == nil:
		w = append(w, "no ref pin: any branch or tag can reach it")
	case ref != nil && !ref.exact():
		w = append(w, fmt.Sprintf("%s: every branch or tag it matches can reach it", ref.String()))
	}
	if cond["environment"] == nil {
		w = append(w, "no environment pin: the job need not pass an environment's protection rules (required reviewers, branch rules) to reach it")
	}

	if github || !gitlab {
		if p.eventReachable("pull_request_target") {
			w = append(w, "pull_request_target events are not refused: they run with the base branch's ref, so a ref pin does not stop them; add deny: [{event_name: pull_request_target}]")
		}
		if p.eventReachable("pull_request") && (ref == nil || ref.matches(probePullRequestRef)) {
			w = append(w, "pull_request events can reach it: code from a pull request, not yet reviewed, would get the credential; pin event_name or ref")
		}
	}
	if gitlab {
		ps := cond["pipeline_source"]
		if (ps == nil || ps.matches(gitlabMergeRequest)) && !p.deniedOutright("pipeline_source", gitlabMergeRequest) {
			w = append(w, "merge request pipelines (pipeline_source merge_request_event) are not refused: a merge request, possibly from a fork, could reach it")
		}
		if rp := cond["ref_protected"]; rp == nil || !rp.exact() || rp.matches("false") {
			w = append(w, "no ref_protected: true pin: a branch anyone with Developer access can push to could reach it")
		}
	}
	if d := p.Grant.MaxDuration(); d > time.Hour {
		w = append(w, fmt.Sprintf("the credential lives up to %s: more than an hour", FormatDuration(d)))
	}
	return w
}

// eventReachable reports whether a GitHub event passes match.event_name
// and no deny block refuses it outright.
func (p *Policy) eventReachable(event string) bool {
	for _, c := range p.match {
		if c.claim == "event_name" && !c.matches(event) {
			return false
		}
	}
	return !p.deniedOutright("event_name", event)
}

// deniedOutright reports whether a deny block on claim alone refuses value.
func (p *Policy) deniedOutright(claim, value string) bool {
	for i := range p.deny {
		d := &p.deny[i]
		if len(d.conds) == 1 && d.conds[0].claim == claim && d.conds[0].matches(value) {
			return true
		}
	}
	return false
}
