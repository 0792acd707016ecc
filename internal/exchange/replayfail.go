package exchange

import (
	"errors"
	"time"

	"github.com/ferry-broker/ferry/internal/replay"
)

// replayFailure is the refusal for a replay store that could not record a
// claim. Either way no token is taken: a store that cannot remember a
// token id cannot stop its replay.
//
// A full store is 503 rather than 429: it is the broker's capacity, shared
// by every caller, and the caller refused is whoever asks next, not the
// one who filled it (each entry is a token that passed a policy). The
// Retry-After is when the oldest entry expires, the first moment there is
// room.
func replayFailure(err error, now time.Time) error {
	var full *replay.FullError
	if errors.As(err, &full) {
		return &atCapacity{wait: full.RoomAt.Sub(now), err: err}
	}
	return &unavailable{reason: "the replay store is unreachable; refusing rather than risking a replay", err: err}
}
