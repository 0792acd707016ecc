package trust

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ferry-broker/ferry/internal/platform"
	"github.com/ferry-broker/ferry/internal/yamlpos"
)

// Exposure is one policy's blast radius: who can reach which credential,
// for how long, and what about the policy's shape is risky.
type Exposure struct {
	Policy      string
	File        string
	Issuer      string
	Who         []string // the match conditions, e.g. `ref = "refs/heads/main"`
	Deny        []string // the deny blocks, e.g. `event_name = "pull_request_target"`
	Grant       string   // the grant's kind: aws, gcp, token…
	Credential  string   // what it reaches: role ARN, service account, audience…
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
		yamlpos.FormatDuration(e.MaxDuration), int64(e.MaxDuration / time.Second), nonNil(e.Warnings)})
}

// BlastRadius describes every policy of the set, sorted by name.
func BlastRadius(set *Set) []Exposure {
	ps := set.Policies()
	out := make([]Exposure, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.exposure(set.platforms))
	}
	return out
}

func (p *Policy) exposure(platforms platform.Set) Exposure {
	t := p.Grant.Target()
	e := Exposure{Policy: p.Name, File: p.File(), Issuer: p.Issuer, Grant: p.Grant.Kind(), MaxDuration: p.Grant.MaxDuration(),
		Credential: t.Credential, Narrowing: t.Narrowing}
	for _, c := range p.match {
		e.Who = append(e.Who, c.String())
	}
	denies := p.denies()
	for i := range denies {
		e.Deny = append(e.Deny, denies[i].String())
	}
	e.Warnings = append(p.warnings(platforms), t.Warnings...)
	return e
}

// warnings flags policy shapes that widen who can reach the credential.
func (p *Policy) warnings(platforms platform.Set) []string {
	var w []string
	cond := map[string]*condition{}
	names := make([]string, 0, len(p.match))
	for _, c := range p.match {
		cond[c.claim] = c
		names = append(names, c.claim)
	}

	for _, c := range p.match {
		if _, pin := platforms.Pin(c.claim); pin && !c.exact() {
			w = append(w, fmt.Sprintf("%s: every repository or project this pattern matches, including ones created later, can reach it", c.String()))
		}
	}
	for _, pl := range platforms {
		for _, pin := range pl.Pins {
			if c := cond[pin.Claim]; c != nil && c.exact() && pin.StableID != "" && cond[pin.StableID] == nil {
				w = append(w, pin.IDWarning)
			}
		}
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

	for _, pl := range platforms.For(p.Issuer, names) {
		for _, r := range pl.Risks {
			if p.reachable(r, cond) {
				w = append(w, r.Message)
			}
		}
	}
	if d := p.Grant.MaxDuration(); d > time.Hour {
		w = append(w, fmt.Sprintf("the credential lives up to %s: more than an hour", yamlpos.FormatDuration(d)))
	}
	return w
}

// reachable reports whether a token with the risk's probe claims would
// pass the policy's conditions on them, no deny block on one of them alone
// refusing it. With r.Exact, a condition on a probe claim that is a
// pattern counts as reaching it too.
func (p *Policy) reachable(r platform.Risk, cond map[string]*condition) bool {
	for _, pc := range r.Probe {
		c := cond[pc.Claim]
		if r.Exact && c != nil && !c.exact() {
			continue
		}
		if (c != nil && !c.matches(pc.Value)) || p.deniedOutright(pc.Claim, pc.Value) {
			return false
		}
	}
	return true
}

// deniedOutright reports whether a deny block on claim alone refuses value.
func (p *Policy) deniedOutright(claim, value string) bool {
	denies := p.denies()
	for i := range denies {
		d := &denies[i]
		if len(d.conds) == 1 && d.conds[0].claim == claim && d.conds[0].matches(value) {
			return true
		}
	}
	return false
}
