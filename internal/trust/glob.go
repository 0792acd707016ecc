package trust

import "unicode/utf8"

// glob is a glob pattern, matched as written: * is any run of characters
// other than /, ** any run at all (but a line break, as the regexp .* it
// once compiled to), ? one character other than /, and every other
// character is literal. It matches as a small NFA whose states are byte
// offsets into the pattern, in time linear in the text whatever the
// pattern, and holds nothing but the pattern: a regexp of it costs a
// hundred times the memory, which ten thousand policies with a glob each
// would feel.
type glob string

// MatchString reports whether the whole of s matches the pattern. It
// follows only the states that are alive, which for a glob are few (one,
// and one more per * that could still be matching), so the cost is about
// one step per rune of s.
func (g glob) MatchString(s string) bool {
	// The state sets live on the stack for patterns of up to 255 bytes.
	const onStack = 256
	var (
		lists [2][onStack]int32
		bits  [2][onStack / 64]uint64
		sets  [2]stateSet
	)
	states := len(g) + 1 // offsets 0..len(g); the last accepts
	for i := range sets {
		if states <= onStack {
			sets[i].list, sets[i].bits = lists[i][:states], bits[i][:(states+63)/64]
		} else {
			sets[i].list, sets[i].bits = make([]int32, states), make([]uint64, (states+63)/64)
		}
	}
	cur, next := &sets[0], &sets[1]
	g.add(cur, 0)
	for _, r := range s {
		next.reset()
		for _, i := range cur.list[:cur.n] {
			switch w := g.wildcard(i); {
			case i == int32(len(g)):
				// The accepting state has no way on.
			case w == 2: // **
				if r != '\n' {
					g.add(next, i)
				}
			case w == 1 && g[i] == '*':
				if r != '/' {
					g.add(next, i)
				}
			case w == 1: // ?
				if r != '/' {
					g.add(next, i+1)
				}
			default:
				if c, size := utf8.DecodeRuneInString(string(g[i:])); r == c {
					g.add(next, i+int32(size))
				}
			}
		}
		if next.n == 0 {
			return false
		}
		cur, next = next, cur
	}
	return cur.has(int32(len(g)))
}

// wildcard is the length of the wildcard at offset i: 2 for **, 1 for * or
// ?, 0 for a literal character (or the end).
func (g glob) wildcard(i int32) int32 {
	switch {
	case int(i) >= len(g):
		return 0
	case g[i] == '*' && int(i)+1 < len(g) && g[i+1] == '*':
		return 2
	case g[i] == '*' || g[i] == '?':
		return 1
	}
	return 0
}

// add makes the state at offset i live, and the states after it that a
// star matching nothing reaches.
func (g glob) add(ss *stateSet, i int32) {
	for {
		if ss.has(i) {
			return
		}
		ss.bits[i/64] |= 1 << (i % 64)
		ss.list[ss.n] = i
		ss.n++
		w := g.wildcard(i)
		if w == 0 || g[i] == '?' {
			return
		}
		i += w
	}
}

// stateSet is the NFA's live states: a list to walk (the first n of list,
// which has room for every state) and a bitset to keep each state once.
type stateSet struct {
	list []int32
	n    int
	bits []uint64
}

func (ss *stateSet) has(i int32) bool { return ss.bits[i/64]&(1<<(i%64)) != 0 }

func (ss *stateSet) reset() {
	for _, i := range ss.list[:ss.n] {
		ss.bits[i/64] &^= 1 << (i % 64)
	}
	ss.n = 0
}
