package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name        string
		live, floor uint64
		base, want  int
	}{
		{"tiny heap: the runtime's scaled minimum is the floor", 1 * mib, 16 * mib, 100, 400},
		{"nothing live yet", 0, 16 * mib, 100, 400},
		{"small heap reaches the floor", 4 * mib, 16 * mib, 100, 300},
		{"rounds up, never short of the floor", 3 * mib, 16 * mib, 100, 400},
		{"just short of half the floor", 7 * mib, 16 * mib, 100, 129},
		{"half the floor: GOGC=100 already gets there", 8 * mib, 16 * mib, 100, 100},
		{"large heap collects as without a floor", 200 * mib, 16 * mib, 100, 100},
		{"a higher base is kept", 4 * mib, 16 * mib, 350, 350},
		{"a base at or over the top is left alone", 1 * mib, 16 * mib, 500, 500},
		{"a lower base on a large heap", 100 * mib, 16 * mib, 50, 50},
		{"a lower base on a small heap", 2 * mib, 16 * mib, 50, 400},
		{"a floor under the runtime's minimum changes nothing", 1 * mib, 2 * mib, 100, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Percent(tt.live, tt.floor, tt.base)
			if got != tt.want {
				t.Fatalf("Percent(%d MiB, %d MiB, %d) = %d, want %d", tt.live/mib, tt.floor/mib, tt.base, got, tt.want)
			}
			if got > tt.base {
				goal := max(tt.live*uint64(100+got)/100, defaultHeapMinimum*uint64(got)/100)
				if goal < tt.floor {
					t.Errorf("goal %d is short of the floor %d", goal, tt.floor)
				}
			}
		})
	}
}

func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitPercent collects until GOGC is want, since the adjustment runs in a
// cleanup some time after a collection.
func waitPercent(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for int(read("/gc/gogc:percent")) != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d, want %d", read("/gc/gogc:percent"), want)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

var keepAlive [][]byte

// TestKeep checks the floor in the running collector: raised on the test's
// small heap, dropped back to the base once the live heap passes half the
// floor, and restored at stop.
func TestKeep(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const floor = 64 << 20
	stop := Keep(floor)
	defer stop()

	live := read("/gc/heap/live:bytes")
	if live > floor/8 {
		t.Skipf("the test binary holds %d bytes live already", live)
	}
	waitPercent(t, Percent(read("/gc/heap/live:bytes"), floor, 100))
	if p := int(read("/gc/gogc:percent")); p <= 100 {
		t.Fatalf("GOGC %d on a %d-byte heap, want it raised", p, live)
	}
	if goal := read("/gc/heap/goal:bytes"); goal < floor*9/10 {
		t.Errorf("heap goal %d, want about the floor %d", goal, floor)
	}

	// Past half the floor, GOGC=100 alone keeps the goal above it.
	for range 48 {
		keepAlive = append(keepAlive, make([]byte, 1<<20))
	}
	waitPercent(t, 100)
	keepAlive = nil

	stop()
	runtime.GC()
	if p := int(read("/gc/gogc:percent")); p != 100 {
		t.Errorf("GOGC %d after stop, want the 100 it started with", p)
	}
}

func TestKeepLeavesGOGCOffAlone(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	stop := Keep(Default)
	runtime.GC()
	runtime.GC()
	stop()
	if p := int(int64(read("/gc/gogc:percent"))); p != -1 {
		t.Errorf("GOGC %d, want off (-1) left alone", p)
	}
}
