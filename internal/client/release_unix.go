//go:build unix

package client

import (
	"os"
	"syscall"
)

// ownedByMe reports whether the file belongs to this process's user.
func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}
