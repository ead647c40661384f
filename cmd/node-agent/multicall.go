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
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/spf13/cobra"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node"
)

// multiCall runs node-agent as one of the programs containerd executes: the
// runc shim (by its link name, or as `node-agent -namespace NS -id ID ...`
// when the shim re-executes itself as a daemon through its resolved path),
// the CNI plugin, or containerd's own CLI when a shim calls back to publish
// an event (`node-agent --address SOCKET publish ...`). It reports whether it
// handled the invocation.
func multiCall() bool {
	name := filepath.Base(os.Args[0])
	if len(os.Args) > 1 && os.Args[1] == "-namespace" {
		name = node.ShimName
	}
	switch name {
	case node.ShimName:
		keepOnlyShimPlugins()
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

// keepOnlyShimPlugins drops containerd's daemon plugins from the plugin
// registry. One binary holds both containerd and its shim; the shim loads
// every registered plugin, so it must see only its own (the runc task
// service; it registers its event publisher and shutdown service itself).
func keepOnlyShimPlugins() {
	all := registry.Graph(func(*plugin.Registration) bool { return false })
	registry.Reset()
	for i := range all {
		if all[i].Type == plugins.TTRPCPlugin && all[i].ID == "task" {
			registry.Register(&all[i])
		}
	}
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
