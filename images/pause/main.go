// Command pause is the pod sandbox's PID 1: it holds the pod's namespaces
// open, reaps orphaned children that the kernel reparents to it, and exits 0
// on SIGINT or SIGTERM. The Makefile builds it statically into the
// registry.k8s.io/pause image (config.PauseImage).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is the tag of the image this binary is built for.
const version = "3.10.1"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Printf("pause %s (vcluster-standalone)\n", version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	os.Exit(wait(sigs))
}

// wait handles signals until SIGINT or SIGTERM arrives and returns the exit
// code; every SIGCHLD reaps whatever children have exited.
func wait(sigs <-chan os.Signal) int {
	reap() // children that exited before the handler was installed
	for sig := range sigs {
		switch sig {
		case syscall.SIGINT, syscall.SIGTERM:
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
			return 0
		case syscall.SIGCHLD:
			reap()
		}
	}
	return 0
}

// reap collects every exited child without blocking; it returns how many.
// Signals coalesce, so one SIGCHLD may stand for many exits.
func reap() int {
	n := 0
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return n
		}
		n++
	}
}
