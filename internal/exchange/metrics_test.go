package exchange_test

import (
	"strings"
	"testing"
)

func TestMetricsTimeEachStageAndCountReplays(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tok := h.sign(h.gh, "github-push-main", nil)
	if r := h.exchange("artifacts", tok, nil); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	wantError(t, h.exchange("artifacts", tok, nil), 401, "invalid_token")
	wantError(t, h.exchange("artifacts", "not-a-jwt", nil), 401, "invalid_token")
	m := h.get("/metrics").raw
	for _, want := range []string{
		// Three verified (one refused there), two decided and claimed, one minted and audited.
		`ferry_exchange_stage_duration_seconds_count{stage="verify"} 3`,
		`ferry_exchange_stage_duration_seconds_count{stage="decide"} 2`,
		`ferry_exchange_stage_duration_seconds_count{stage="limit"} 2`,
		`ferry_exchange_stage_duration_seconds_count{stage="replay"} 2`,
		`ferry_exchange_stage_duration_seconds_count{stage="mint"} 1`,
		`ferry_exchange_stage_duration_seconds_count{stage="audit"} 1`,
		`ferry_replay_hits_total 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(m, "stage_duration_seconds_count")+"\n"+grep(m, "ferry_replay"))
		}
	}
}
