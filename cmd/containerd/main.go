// Command containerd is containerd (with its CRI plugin), from the
// containerd module go.mod pins, with the plugins of plugins.go: node-agent runs it
// as a child process with the config it writes. A binary of its own, so the
// daemon carries only containerd's packages and memory, not node-agent's.
// It also answers the shims' `--address SOCKET publish` callback (containerd
// passes its own path to them). `make build` embeds it in node-agent, which
// installs it in its bin dir.
//
//	containerd --config /var/lib/node-agent/containerd.toml
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/cmd/containerd/command"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/procmem"
)

// A pod burst's heap is given back within idleHeapCheck once it is over.
const idleHeapCheck = 30 * time.Second

func main() {
	go procmem.ReturnIdleHeap(context.Background(), idleHeapCheck, 8<<20)
	if err := command.App().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "containerd: %s\n", err)
		os.Exit(1)
	}
}
