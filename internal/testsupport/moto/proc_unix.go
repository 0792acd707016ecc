//go:build unix

package moto

import (
	"os/exec"
	"syscall"
)

const (
	syscallTerm = syscall.SIGTERM
	syscallKill = syscall.SIGKILL
)

// moto_server is a launcher (a pyenv shim, a venv script) that may leave a
// Python child behind; running it in its own process group lets Close signal
// the whole tree at once.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func terminate(cmd *exec.Cmd, sig syscall.Signal) {
	// The group id is the leader's pid; a negative pid signals the group.
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
