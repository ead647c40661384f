// Command containerd-shim-runc-v2 is containerd's runc shim, from the
// containerd module go.mod pins, as upstream builds it: containerd starts
// one per pod (`... start`, which re-executes itself as the shim daemon
// `-namespace NS -id ID ...`). A binary of its own, apart from node-agent,
// so that both execs start in milliseconds and each pod's shim holds only
// the shim's memory. `make build` embeds it in node-agent, which installs it
// in its bin dir.
//
//	containerd-shim-runc-v2 -v
package main

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	"github.com/containerd/containerd/v2/pkg/shim"
)

func main() {
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}
