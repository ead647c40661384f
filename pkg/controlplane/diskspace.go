package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"k8s.io/klog/v2"
)

// Free space on the data dir's filesystem.
//
// etcd cannot live with a full disk: its WAL is preallocated in 64 MiB
// segments, so small writes still succeed for a while, but the first commit
// that needs a new database page gets ENOSPC and etcd exits at once (a
// "fatal" log line, os.Exit: nothing we can recover in-process). So:
//   - start refuses to begin with less than startMinFree, in one line;
//   - while running, below writeStopFree the control plane raises etcd's
//     NOSPACE alarm: etcd refuses every write (the API answers "database space
//     exceeded"), reads go on; once startMinFree is free again the alarm is
//     disarmed and writes resume, without a restart.
//
// A disk filled faster than the check notices still ends in etcd's exit; the
// restarted start then waits for space (see waitForSpace).
const (
	startMinFree     = 128 << 20
	writeStopFree    = 64 << 20
	diskSpaceEvery   = time.Second
	spaceBackoffMax  = 4 * time.Minute // below TimeoutStartSec (300 s)
	spaceBackoffBase = 15 * time.Second
)

// freeSpace is what an unprivileged writer may still use on path's
// filesystem (statfs f_bavail), and that filesystem's mount point.
func freeSpace(path string) (free uint64, mount string, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, "", err
	}
	return st.Bavail * uint64(st.Bsize), mountPointOf(path), nil
}

// mountPointOf is the longest mount point in /proc/self/mounts that holds
// path ("" if unknown).
func mountPointOf(path string) string {
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		abs = path
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	best := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		mnt := strings.ReplaceAll(fields[1], `\040`, " ")
		if (abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) > len(best) {
			best = mnt
		}
	}
	return best
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// noSpaceError is start's one line when the data dir's filesystem is full.
type noSpaceError struct {
	dir, mount string
	free       uint64
}

func (e *noSpaceError) Error() string {
	return fmt.Sprintf("data dir %s: its filesystem (mounted at %s) has %s free, the control plane needs at least %s: free space there (or move the data dir with --data-dir); under systemd it starts by itself once there is room",
		e.dir, e.mount, mib(e.free), mib(startMinFree))
}

func checkFreeSpace(dir string) error {
	free, mount, err := freeSpace(dir)
	if err != nil {
		return nil // prepareDataDir reports an unusable dir
	}
	if free < startMinFree {
		return &noSpaceError{dir: dir, mount: mount, free: free}
	}
	return nil
}

// waitForSpace is the start-up backoff for a full disk. systemd 252 (Debian
// 12) has no growing RestartSec (RestartSteps needs 254), and a plain
// restart every 2 s would only repeat the same line. So the first failure
// is returned at once (`systemctl start` reports it), and a repeat of it
// within backoffReset (remembered in stateDir: systemd's RuntimeDirectory, a
// tmpfs kept across restarts, never the full disk) waits: up to 15 s, 30 s,
// ... 4 min, checking every 2 s, and starts as soon as there is room; only
// when the time is up does it return the error, and systemd's next restart
// waits again. ctx ends the wait at once (stop). Without stateDir every
// start is a first one.
func waitForSpace(ctx context.Context, dir, stateDir string, progress io.Writer) error {
	err := checkFreeSpace(dir)
	if stateDir == "" {
		return err
	}
	record := filepath.Join(stateDir, "no-space-"+strings.NewReplacer("/", "_").Replace(filepath.Clean(dir)))
	if err == nil {
		os.Remove(record)
		return nil
	}
	n := failuresBefore(record)
	_ = os.WriteFile(record, []byte(fmt.Sprint(n+1)), 0o600)
	if n == 0 {
		return err
	}
	wait := min(spaceBackoffBase<<min(n-1, 8), spaceBackoffMax)
	fmt.Fprintf(progress, "%v; start %d in a row: waiting up to %s for free space\n", err, n+1, wait)
	deadline := time.After(wait)
	for {
		select {
		case <-ctx.Done():
			return err
		case <-deadline:
			return err
		case <-time.After(2 * time.Second):
		}
		if checkFreeSpace(dir) == nil {
			os.Remove(record)
			fmt.Fprintf(progress, "data dir %s has room again; starting\n", dir)
			return nil
		}
	}
}

// backoffReset: a failure record older than this is a new incident.
const backoffReset = 10 * time.Minute

func failuresBefore(record string) int {
	info, err := os.Stat(record)
	if err != nil || time.Since(info.ModTime()) > backoffReset {
		return 0
	}
	data, _ := os.ReadFile(record)
	var n int
	fmt.Sscan(string(data), &n)
	return n
}

// diskGuard stops etcd's writes (NOSPACE alarm) while the data dir's
// filesystem is nearly full and lets them resume once it has room. It only
// disarms an alarm while etcd's database is well below its quota (90 %), so
// a real quota alarm stays for the operator (compact, defragment, disarm).
type diskGuard struct {
	dir  string
	etcd *etcd

	cancel context.CancelFunc
	done   chan struct{}
}

func (g *diskGuard) Name() string               { return "disk space guard" }
func (g *diskGuard) Init(context.Context) error { return nil }

func (g *diskGuard) Start(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan struct{})
	go func() {
		defer close(g.done)
		for {
			g.check(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(diskSpaceEvery):
			}
		}
	}()
	return nil
}

func (g *diskGuard) check(ctx context.Context) {
	server := g.etcd.server
	if server == nil {
		return
	}
	free, mount, err := freeSpace(g.dir)
	if err != nil {
		return
	}
	s := server.Server
	alarmed := false
	for _, a := range s.Alarms() {
		alarmed = alarmed || a.Alarm == pb.AlarmType_NOSPACE
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	switch {
	case free < writeStopFree && !alarmed:
		klog.Warningf("data dir %s: its filesystem (mounted at %s) has only %s free (< %s): etcd refuses writes from now on to keep its data safe (NOSPACE alarm); reads go on; free space there and writes resume by themselves",
			g.dir, mount, mib(free), mib(writeStopFree))
		if _, err := s.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: uint64(s.MemberID()), Alarm: pb.AlarmType_NOSPACE}); err != nil {
			klog.ErrorS(err, "failed to raise etcd's NOSPACE alarm")
		}
	case free >= startMinFree && alarmed && s.Backend().Size() < quotaBytes(s.Cfg.QuotaBackendBytes)*9/10:
		if _, err := s.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: uint64(s.MemberID()), Alarm: pb.AlarmType_NOSPACE}); err != nil {
			klog.ErrorS(err, "failed to disarm etcd's NOSPACE alarm")
			return
		}
		klog.Infof("data dir %s has %s free again: etcd accepts writes again (NOSPACE alarm disarmed)", g.dir, mib(free))
	}
}

// quotaBytes is etcd's backend quota (0 means its 2 GiB default).
func quotaBytes(q int64) int64 {
	if q <= 0 {
		return 2 << 30
	}
	return q
}

func (g *diskGuard) Stop() error {
	if g.cancel == nil {
		return nil
	}
	g.cancel()
	<-g.done
	return nil
}
