package audit

import (
	"cmp"
	"slices"
	"time"
)

// A policy is flagged as granting too long when, over at least
// minLifecycleSample finished grants, its jobs held the credential for a
// median of at most heldShareTooLong of the median lifetime granted.
const (
	minLifecycleSample = 3
	heldShareTooLong   = 0.25
)

// PolicyLifecycle is what became of one policy's credentials granted in
// the report's window: ended early by the job, left to expire, or still
// live; and how long jobs held them against how long they were granted.
type PolicyLifecycle struct {
	Name string `json:"name"`
	// Kind is the credential kind of the policy's latest grant.
	Kind   string `json:"kind"`
	Grants int    `json:"grants"`
	// ReleasedEarly were released before they expired; Revoked of those
	// stopped working at the release (the rest were recorded and expired
	// by themselves).
	ReleasedEarly int `json:"released_early"`
	Revoked       int `json:"revoked"`
	// LeftToExpire expired with no release before their expiry.
	LeftToExpire int `json:"left_to_expire"`
	// Live are neither released nor expired at the report's end.
	Live int `json:"live"`
	// Over the finished grants (released early or expired): the median
	// time held (to the release, or the whole lifetime when left to
	// expire), the median lifetime granted, and the longest time held.
	MedianHeldSeconds    int64 `json:"median_held_seconds"`
	MedianGrantedSeconds int64 `json:"median_granted_seconds"`
	LongestHeldSeconds   int64 `json:"longest_held_seconds"`
	// TooLong says the policy's duration is far longer than its jobs
	// need: they hold a median of a quarter or less of what they are
	// granted. SuggestedSeconds is a lifetime that covers the longest
	// hold seen with room to spare.
	TooLong          bool  `json:"too_long"`
	SuggestedSeconds int64 `json:"suggested_seconds,omitempty"`
}

// ScopeUsage counts grants in the window that carried one scope entry
// (a GitHub token's "contents:read", say) of one kind.
type ScopeUsage struct {
	Kind     string   `json:"kind"`
	Scope    string   `json:"scope"`
	Grants   int      `json:"grants"`
	Policies []string `json:"policies"`
}

// lifecycle joins grants to their releases by request id.
type lifecycle struct {
	grants   map[string]*lifeGrant
	order    []string // request ids of grants, in log order
	releases map[string]Released
}

type lifeGrant struct {
	policy, kind string
	at, expires  time.Time
	scope        []string
}

func newLifecycle() *lifecycle {
	return &lifecycle{grants: map[string]*lifeGrant{}, releases: map[string]Released{}}
}

// observe takes one record. Grants count only in the window; a release
// counts whenever it came, since it may follow its grant by hours.
func (l *lifecycle) observe(rec *Record, inWindow bool) {
	switch {
	case rec.Decision == Allow && inWindow && rec.Credential != nil && rec.Policy != "" && rec.RequestID != "":
		if _, dup := l.grants[rec.RequestID]; dup {
			return
		}
		l.grants[rec.RequestID] = &lifeGrant{policy: rec.Policy, kind: rec.Credential.Type,
			at: rec.Time, expires: rec.Credential.ExpiresAt, scope: rec.Credential.Scope}
		l.order = append(l.order, rec.RequestID)
	case rec.Decision == Release && rec.Error == "" && rec.Released != nil && rec.RequestID != "":
		// The first release decided; a repeat changed nothing.
		if _, seen := l.releases[rec.RequestID]; !seen {
			l.releases[rec.RequestID] = *rec.Released
		}
	}
}

// result summarises per policy and per scope, as of now.
func (l *lifecycle) result(now time.Time) ([]PolicyLifecycle, []ScopeUsage) {
	type acc struct {
		PolicyLifecycle
		held, granted []time.Duration
	}
	byPolicy := map[string]*acc{}
	type scopeKey struct{ kind, scope string }
	scopes := map[scopeKey]*ScopeUsage{}
	scopePolicies := map[scopeKey]map[string]bool{}
	for _, id := range l.order {
		g := l.grants[id]
		a := byPolicy[g.policy]
		if a == nil {
			a = &acc{PolicyLifecycle: PolicyLifecycle{Name: g.policy}}
			byPolicy[g.policy] = a
		}
		a.Grants++
		a.Kind = g.kind
		// The allow is written just after the credential's issue time,
		// which providers keep in whole seconds: up to the second.
		granted := max(g.expires.Sub(g.at), 0)
		granted = (granted + time.Second - 1).Truncate(time.Second)
		rel, released := l.releases[id]
		if released && rel.GrantedSeconds > 0 {
			granted = time.Duration(rel.GrantedSeconds) * time.Second // the broker's own figure
		}
		switch {
		case released && !rel.Expired:
			a.ReleasedEarly++
			if rel.Revoked {
				a.Revoked++
			}
			a.held = append(a.held, min(time.Duration(rel.HeldSeconds)*time.Second, granted))
			a.granted = append(a.granted, granted)
		case !g.expires.After(now) || released:
			a.LeftToExpire++
			a.held = append(a.held, granted)
			a.granted = append(a.granted, granted)
		default:
			a.Live++
		}
		for _, s := range g.scope {
			k := scopeKey{g.kind, s}
			u := scopes[k]
			if u == nil {
				u = &ScopeUsage{Kind: g.kind, Scope: s}
				scopes[k] = u
				scopePolicies[k] = map[string]bool{}
			}
			u.Grants++
			scopePolicies[k][g.policy] = true
		}
	}

	var out []PolicyLifecycle
	for _, a := range byPolicy {
		p := a.PolicyLifecycle
		if len(a.held) > 0 {
			held, granted := median(a.held), median(a.granted)
			longest := slices.Max(a.held)
			p.MedianHeldSeconds, p.MedianGrantedSeconds = seconds(held), seconds(granted)
			p.LongestHeldSeconds = seconds(longest)
			if len(a.held) >= minLifecycleSample && granted > 0 && float64(held) <= heldShareTooLong*float64(granted) {
				p.TooLong = true
				// The longest hold and half again, in whole minutes.
				p.SuggestedSeconds = seconds(max((longest*3/2+time.Minute-1)/time.Minute*time.Minute, time.Minute))
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PolicyLifecycle) int { return cmp.Compare(a.Name, b.Name) })

	var su []ScopeUsage
	for k, u := range scopes {
		for p := range scopePolicies[k] {
			u.Policies = append(u.Policies, p)
		}
		slices.Sort(u.Policies)
		su = append(su, *u)
	}
	slices.SortFunc(su, func(a, b ScopeUsage) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(b.Grants, a.Grants), cmp.Compare(a.Scope, b.Scope))
	})
	return out, su
}

// median of ds, which it sorts; the lower middle of an even count, so it
// is always a time some job actually held.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[(len(ds)-1)/2]
}

func seconds(d time.Duration) int64 { return int64(d.Round(time.Second) / time.Second) }
