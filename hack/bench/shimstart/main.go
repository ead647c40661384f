// Command shimstart times containerd's runc shim start, as containerd starts
// it for a pod: `SHIM -namespace NS -address A -id ID start` with the
// bootstrap parameters on stdin, in a bundle directory, which re-executes
// the shim as its daemon and prints the daemon's ttrpc address; the time is
// from that exec to the daemon's first ttrpc answer (a Connect). Each shim
// is shut down again; no container is created. For hack/bench-node.sh.
//
//	shimstart -shim /var/lib/node-agent/bin/containerd-shim-runc-v2 -n 30   # prints "p50 p99 max" in ms
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
)

func main() {
	shim := flag.String("shim", "", "the shim binary (or a link named containerd-shim-runc-v2 to it)")
	n := flag.Int("n", 30, "number of shim starts")
	flag.Parse()
	if *shim == "" {
		fail(fmt.Errorf("-shim is required"))
	}
	path, err := filepath.Abs(*shim) // the shim runs in its bundle directory
	fail(err)
	dir, err := os.MkdirTemp("", "shimstart-")
	fail(err)
	var ms []float64
	for i := 0; i < *n; i++ {
		d, err := startOne(path, dir, fmt.Sprintf("shimstart-%d-%d", os.Getpid(), i))
		if err != nil {
			os.RemoveAll(dir)
			fail(err)
		}
		ms = append(ms, float64(d.Microseconds())/1000)
	}
	os.RemoveAll(dir)
	sort.Float64s(ms)
	fmt.Printf("%.1f %.1f %.1f\n", pct(ms, 50), pct(ms, 99), ms[len(ms)-1])
}

// startOne starts one shim for id, waits for its daemon's answer, and shuts it down.
func startOne(shim, dir, id string) (time.Duration, error) {
	bundle := filepath.Join(dir, id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return 0, err
	}
	defer os.RemoveAll(bundle)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.2.0"}`), 0o600); err != nil {
		return 0, err
	}
	// The daemon writes its log into the bundle's "log" fifo, which
	// containerd reads; here nobody needs it, but someone must open it.
	logFifo := filepath.Join(bundle, "log")
	if err := syscall.Mkfifo(logFifo, 0o600); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(logFifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, err
	}
	defer logf.Close()

	socketDir := filepath.Join(dir, "s")
	address := filepath.Join(dir, "containerd.sock") // only named: the shim hashes it into its socket name
	params, err := proto.Marshal(&bootapi.BootstrapParams{
		InstanceID: id, Namespace: "shimstart",
		ContainerdGrpcAddress: address, ContainerdTtrpcAddress: address + ".ttrpc",
		SocketDir: &socketDir,
	})
	if err != nil {
		return 0, err
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(shim, "-namespace", "shimstart", "-address", address, "-id", id, "start")
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = bundle, bytes.NewReader(params), &out, &stderr
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+address+".ttrpc", "GOMAXPROCS=2")
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s start: %v: %s", shim, err, strings.TrimSpace(stderr.String()))
	}
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(out.Bytes(), &res); err != nil || res.Address == "" {
		return 0, fmt.Errorf("%s start printed no bootstrap result (%v): %q", shim, err, out.String())
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(res.Address, "unix://"))
	if err != nil {
		return 0, fmt.Errorf("dial the shim daemon: %w", err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	task := taskapi.NewTTRPCTaskClient(client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := task.Connect(ctx, &taskapi.ConnectRequest{ID: id}); err != nil {
		return 0, fmt.Errorf("connect to the shim daemon: %w", err)
	}
	took := time.Since(t0)
	// Shutdown ends the daemon (it has no task); the connection drops.
	_, _ = task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id, Now: true})
	return took, nil
}

// pct is the p-th percentile of sorted v (nearest rank).
func pct(v []float64, p int) float64 {
	i := (len(v)*p+99)/100 - 1
	if i < 0 {
		i = 0
	}
	return v[i]
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "shimstart:", err)
		os.Exit(1)
	}
}
