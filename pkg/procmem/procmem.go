// Package procmem gives memory a long-running process no longer uses back
// to the OS: the pages of its own executable it read once (node-agent's
// embedded programs, written to disk at start), and the heap a burst of work
// left behind (containerd after a pod burst). Both stay counted in the
// process's RSS otherwise; what is used again faults back in.
package procmem

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ReleaseExecutablePages drops this process's resident pages of its own
// executable's read-only data and returns how many KiB were resident in
// them before. A mapping that holds a page of its own (an "Anonymous"
// copy-on-write page, e.g. after a relocation) is left alone, as are
// writable mappings (dropping those would lose data) and code: a busy
// process faults nearly all of its code back within seconds (measured on
// the control plane), so dropping it gains nothing.
func ReleaseExecutablePages() (releasedKiB int) {
	for _, m := range ownMappings() {
		if m.anonymousKiB != 0 {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED); errno == 0 {
			releasedKiB += m.rssKiB
		}
	}
	return releasedKiB
}

// ExecutableRSS is the KiB of this process's executable's read-only data
// that are resident.
func ExecutableRSS() (kib int) {
	for _, m := range ownMappings() {
		kib += m.rssKiB
	}
	return kib
}

// ownMappings are this process's read-only data mappings of its executable
// (none if /proc is not there to say).
func ownMappings() []mapping {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil
	}
	return executableMappings(string(smaps), exe)
}

type mapping struct {
	start, end           uint64
	rssKiB, anonymousKiB int
}

// executableMappings parses smaps into the private read-only (r--p)
// mappings of the file exe.
func executableMappings(smaps, exe string) []mapping {
	var out []mapping
	var cur *mapping
	for _, line := range strings.Split(smaps, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			// a mapping's header: start-end perms offset dev inode [path]
			cur = nil
			lo, hi, _ := strings.Cut(f[0], "-")
			s, err1 := strconv.ParseUint(lo, 16, 64)
			e, err2 := strconv.ParseUint(hi, 16, 64)
			if len(f) >= 6 && f[5] == exe && f[1] == "r--p" && err1 == nil && err2 == nil && e > s {
				out = append(out, mapping{start: s, end: e})
				cur = &out[len(out)-1]
			}
		case cur != nil && len(f) >= 2 && f[0] == "Rss:":
			cur.rssKiB, _ = strconv.Atoi(f[1])
		case cur != nil && len(f) >= 2 && f[0] == "Anonymous:":
			cur.anonymousKiB, _ = strconv.Atoi(f[1])
		}
	}
	return out
}

// ReturnIdleHeap returns the heap that is not live to the OS every interval
// while more than minIdle bytes of it are held, until ctx ends. For a daemon
// whose heap spikes in bursts (containerd during a pod burst): the runtime
// keeps up to about twice the live heap, and an idle process collects its
// garbage only every two minutes, so a node would otherwise carry much of
// the last burst's peak. Between bursts it costs a reading of runtime
// metrics per interval.
func ReturnIdleHeap(ctx context.Context, interval time.Duration, minIdle uint64) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if idleHeap() > minIdle {
			debug.FreeOSMemory()
		}
	}
}

// idleHeap is the heap memory held (objects, free and unused spans, not yet
// returned) beyond what was live at the last collection.
func idleHeap() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s)
	var held uint64
	for _, v := range s[:3] {
		if v.Value.Kind() == metrics.KindUint64 {
			held += v.Value.Uint64()
		}
	}
	live := uint64(0)
	if s[3].Value.Kind() == metrics.KindUint64 {
		live = s[3].Value.Uint64()
	}
	if held < live {
		return 0
	}
	return held - live
}
