//go:build !unix

package moto

import (
	"os"
	"os/exec"
)

const (
	syscallTerm = 0
	syscallKill = 1
)

func setProcessGroup(*exec.Cmd) {}

// Without process groups the best available is killing the launcher itself.
func terminate(cmd *exec.Cmd, _ int) {
	_ = cmd.Process.Signal(os.Kill)
}
