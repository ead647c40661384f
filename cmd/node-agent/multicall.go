package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
	containerdcmd "github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node"
)

// multiCall runs node-agent as one of the programs containerd executes: the
// runc shim (by its link name), or containerd's own CLI when a shim calls
// back to publish an event (`node-agent --address SOCKET publish ...`). It
// reports whether it handled the invocation.
func multiCall() bool {
	switch filepath.Base(os.Args[0]) {
	case node.ShimName:
		shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
		return true
	case cni.PluginType:
		cni.PluginMain()
		return true
	}
	if len(os.Args) > 1 && (os.Args[1] == "--address" || os.Args[1] == "-address") {
		runContainerd(os.Args[1:])
		return true
	}
	return false
}

// newContainerdCommand is the child process node-agent run starts.
func newContainerdCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "containerd --config FILE",
		Short:              "Run containerd (started by node-agent run; not for direct use)",
		Example:            "  node-agent containerd --config /var/lib/node-agent/containerd.toml",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(_ *cobra.Command, args []string) {
			runContainerd(args)
		},
	}
}

func runContainerd(args []string) {
	app := containerdcmd.App()
	if err := app.Run(append([]string{"containerd"}, args...)); err != nil {
		os.Stderr.WriteString("containerd: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}
