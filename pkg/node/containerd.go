package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/seccompabi"
)

// Containerd runs containerd (with its CRI plugin) as a child process of
// node-agent: `<bin dir>/containerd --config FILE`, the embedded program
// (cmd/containerd) InstallBinaries puts there. A child of its own keeps
// containerd's globals (logging, gRPC, plugins) apart from the kubelet's, and
// lets it die and restart without taking the kubelet's state with it.
// Containers live in shims, which outlive both.
type Containerd struct {
	node     *config.Node
	host     Host
	logs     io.Writer
	registry string // registries.yaml path

	cmd    *exec.Cmd
	exited chan struct{}
	failed chan error
	exit   error
}

// NewContainerd returns the containerd component; logs receives containerd's output.
func NewContainerd(n *config.Node, host Host, registriesFile string, logs io.Writer) *Containerd {
	return &Containerd{node: n, host: host, registry: registriesFile, logs: logs, failed: make(chan error, 1)}
}

func (c *Containerd) Name() string { return "containerd" }

// ConfigFile is the generated containerd config.
func (c *Containerd) ConfigFile() string { return filepath.Join(c.node.DataDir, "containerd.toml") }

// Init writes the binaries, registry hosts and config containerd needs.
func (c *Containerd) Init(context.Context) error {
	if err := InstallBinaries(c.node.BinDir()); err != nil {
		return err
	}
	if err := writeRegistryHosts(c.node, c.registry, cachedPeers(c.node)); err != nil {
		return err
	}
	for _, dir := range []string{c.node.ContainerdRoot(), config.ContainerdState(), c.node.CNIConfDir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("failed to create %s: %w", dir, err)
		}
	}
	body, err := renderContainerdConfig(newContainerdConfig(c.node, c.host))
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(c.ConfigFile(), body, 0o600)
}

// Start launches containerd. The child is started from a thread that stays
// alive for the child's lifetime, because the parent-death signal fires when
// the starting thread ends, not the process.
func (c *Containerd) Start(context.Context) error {
	c.stopPrevious()
	cmd := exec.Command(filepath.Join(c.node.BinDir(), ContainerdName), "--config", c.ConfigFile())
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	cmd.Env = append(withoutEnv(os.Environ(), "PATH", "NOTIFY_SOCKET", seccompabi.EnvDropX32), "PATH="+c.node.BinDir()+":"+os.Getenv("PATH"))
	if c.dropX32() {
		cmd.Env = append(cmd.Env, seccompabi.EnvDropX32+"=1")
	}
	// If node-agent dies (kill -9), containerd follows; the restarted
	// node-agent starts a new one that reconnects to the running shims.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	c.cmd, c.exited = cmd, make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("failed to start containerd: %w", err)
			close(c.exited)
			return
		}
		_ = os.WriteFile(c.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		started <- nil
		err := cmd.Wait()
		c.exit = err
		close(c.exited)
		c.failed <- fmt.Errorf("containerd exited: %v", err)
	}()
	return <-started
}

// dropX32 reports whether the shims should remove the x32 ABI from seccomp
// profiles: only when the kernel cannot run x32 at all (pkg/seccompabi).
// A failed probe keeps the profiles as containerd wrote them.
func (c *Containerd) dropX32() bool {
	usable, err := seccompabi.ProbeX32(filepath.Join(c.node.BinDir(), ShimName))
	if err != nil {
		fmt.Fprintf(c.logs, "node-agent: seccomp profiles keep x32: %v\n", err)
		return false
	}
	return !usable
}

func (c *Containerd) pidFile() string { return filepath.Join(config.RunDir, "containerd.pid") }

// stopPrevious waits for (and if need be ends) the containerd an earlier
// node-agent started: after a kill -9 of node-agent it is still shutting
// down and holds containerd's database lock. Only the PID recorded in our
// own pid file, and only if it is still that containerd, is signalled.
func (c *Containerd) stopPrevious() {
	data, err := os.ReadFile(c.pidFile())
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	isOurs := func() bool {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && strings.Contains(string(cmdline), "containerd\x00--config\x00"+c.ConfigFile())
	}
	if !isOurs() {
		return
	}
	fmt.Fprintf(c.logs, "waiting for the previous containerd (pid %d) to exit\n", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; isOurs() && i < 400; i++ { // 20 s
		if i == 300 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ready waits until containerd answers on its socket with the CRI plugin up.
func (c *Containerd) Ready(ctx context.Context) error {
	for {
		if err := ping(ctx, config.ContainerdSocket()); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd did not answer on %s: %w", config.ContainerdSocket(), ctx.Err())
		case <-c.exited:
			return fmt.Errorf("containerd exited during start: %v", c.exit)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ping asks containerd for its version and checks the CRI plugin loaded.
func ping(ctx context.Context, socket string) error {
	if _, err := os.Stat(socket); err != nil {
		return err
	}
	cl, err := client.New(socket, client.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cl.Version(ctx); err != nil {
		return err
	}
	resp, err := cl.IntrospectionService().Plugins(ctx, "type==io.containerd.grpc.v1,id==cri")
	if err != nil {
		return err
	}
	for _, p := range resp.Plugins {
		if p.InitErr != nil {
			return fmt.Errorf("CRI plugin failed: %s", p.InitErr.Message)
		}
	}
	if len(resp.Plugins) == 0 {
		return errors.New("CRI plugin not loaded")
	}
	return nil
}

func (c *Containerd) Failed() <-chan error { return c.failed }

// Stop asks containerd to exit and waits; the shims and containers stay.
func (c *Containerd) Stop() error {
	if c.cmd == nil || c.cmd.Process == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(containerdStopTimeout):
		// Safe: its database is crash-safe, containers live in their shims.
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	return nil
}

// containerdStopTimeout is how long containerd may take to exit on SIGTERM
// (it takes well under a second) before it is killed.
const containerdStopTimeout = 3 * time.Second

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			keep = keep && name != n
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
