// Command containerd-shim-runc-v2 is containerd's runc shim, from the
// containerd module go.mod pins, as upstream builds it: containerd starts
// one per pod (`... start`, which re-executes itself as the shim daemon
// `-namespace NS -id ID ...`). A binary of its own, apart from node-agent,
// so that both execs start in milliseconds and each pod's shim holds only
// the shim's memory. `make build` embeds it in node-agent, which installs it
// in its bin dir.
//
// One addition to upstream's shim: the task service narrows each new
// container's seccomp profile to the ABIs it can use before runc compiles it
// (pkg/seccompabi): no x32 when node-agent found the kernel unable to run
// x32 programs (it runs `containerd-shim-runc-v2 -probe-x32-abi` to find
// out), and the native ABI alone for a pod's pause container.
//
//	containerd-shim-runc-v2 -v
package main

import (
	"context"
	"os"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/containerd/ttrpc"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/seccompabi"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == seccompabi.ProbeArg {
		os.Exit(seccompabi.ProbeMain())
	}
	registerTaskService()
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}

// registerTaskService registers the shim's task service the way upstream's
// task/plugin package does, wrapped so that Create can edit the bundle.
func registerTaskService() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			publisher, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			sd, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			svc, err := task.NewTaskService(ic.Context, publisher.(shim.Publisher), sd.(shutdown.Service))
			if err != nil {
				return nil, err
			}
			return &abiTrimmingTasks{svc, seccompabi.DropX32Enabled()}, nil
		},
	})
}

// abiTrimmingTasks is the task service with seccompabi.Trim before each Create.
type abiTrimmingTasks struct {
	taskAPI.TTRPCTaskService
	dropX32 bool
}

func (t *abiTrimmingTasks) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	if _, err := seccompabi.Trim(r.Bundle, t.dropX32); err != nil {
		return nil, err
	}
	return t.TTRPCTaskService.Create(ctx, r)
}

// RegisterTTRPC serves the wrapper, not the service inside it.
func (t *abiTrimmingTasks) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, t)
	return nil
}
