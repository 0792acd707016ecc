package exchange_test

import (
	"fmt"
	"strings"
	"testing"
)

func TestMetricsTimeEachStageAndCountReplays(t *testing.T) {
	// A Ferry token is minted before its jti is claimed (grant.Local), so
	// its replay reaches mint and is dropped there; an AWS grant's replay
	// stops at the claim and never reaches the provider.
	tests := []struct {
		policy, sample string
		mints          int
	}{
		{"artifacts", "github-push-main", 2},
		{"deploy-prod", "github-environment-production", 1},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			h := newHarness(t, harnessOpts{awsMinter: &flakyAWS{ok: true}})
			tok := h.sign(h.gh, tt.sample, nil)
			if r := h.exchange(tt.policy, tok, nil); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			wantError(t, h.exchange(tt.policy, tok, nil), 401, "invalid_token")
			wantError(t, h.exchange(tt.policy, "not-a-jwt", nil), 401, "invalid_token")
			m := h.get("/metrics").raw
			for _, want := range []string{
				// Three verified (one refused there), two decided and claimed, one audited.
				`ferry_exchange_stage_duration_seconds_count{stage="verify"} 3`,
				`ferry_exchange_stage_duration_seconds_count{stage="decide"} 2`,
				`ferry_exchange_stage_duration_seconds_count{stage="limit"} 2`,
				`ferry_exchange_stage_duration_seconds_count{stage="replay"} 2`,
				fmt.Sprintf(`ferry_exchange_stage_duration_seconds_count{stage="mint"} %d`, tt.mints),
				`ferry_exchange_stage_duration_seconds_count{stage="audit"} 1`,
				`ferry_replay_hits_total 1`,
			} {
				if !strings.Contains(m, want) {
					t.Errorf("/metrics lacks %s:\n%s", want, grep(m, "stage_duration_seconds_count")+"\n"+grep(m, "ferry_replay"))
				}
			}
		})
	}
}
