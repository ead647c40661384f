package procmem

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestReleaseExecutablePagesDropsReadOnlyData(t *testing.T) {
	before := ExecutableRSS()
	released := ReleaseExecutablePages()
	after := ExecutableRSS()
	if before == 0 || released == 0 || after >= before {
		t.Fatalf("resident pages of the executable: %d KiB before, %d KiB after the release (%d KiB released)", before, after, released)
	}
	// Data used again faults back in and works.
	data, err := json.Marshal(map[string]any{"sum": sha256.Sum256([]byte("after the release"))})
	if err != nil || len(data) == 0 {
		t.Fatalf("json after the release: %v", err)
	}
	if again := ExecutableRSS(); again <= after {
		t.Errorf("no page faulted back in after running code: %d KiB, %d KiB after the release", again, after)
	}
}

func TestExecutableMappingsKeepsOnlyTheFilesReadOnlyData(t *testing.T) {
	smaps := `00400000-00500000 r-xp 00000000 08:01 12 /usr/bin/prog
Rss:                 800 kB
Anonymous:             0 kB
00500000-00600000 r--p 00100000 08:01 12 /usr/bin/prog
Rss:                 400 kB
Anonymous:             4 kB
00600000-00610000 rw-p 00200000 08:01 12 /usr/bin/prog
Rss:                  64 kB
Anonymous:            64 kB
7f0000000000-7f0000100000 r--p 00000000 08:01 13 /usr/lib/other.so
Rss:                 100 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                1000 kB
Anonymous:          1000 kB
`
	got := executableMappings(smaps, "/usr/bin/prog")
	want := []mapping{{start: 0x500000, end: 0x600000, rssKiB: 400, anonymousKiB: 4}}
	if len(got) != len(want) || got[0] != want[0] {
		t.Fatalf("executableMappings = %+v, want %+v", got, want)
	}
}

func TestReturnIdleHeapGivesBackABurstsHeap(t *testing.T) {
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	run := func(minIdle uint64) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { ReturnIdleHeap(ctx, 5*time.Millisecond, minIdle); close(done) }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		<-done
	}

	burst(64)
	if idle := idleHeap(); idle < 16<<20 {
		t.Fatalf("after a 64 MiB burst the heap holds only %d bytes beyond the live heap", idle)
	}
	before := forced()
	run(1 << 40) // a threshold the burst does not reach: nothing returned
	if forced() != before {
		t.Fatalf("returned the heap below its threshold")
	}
	run(8 << 20)
	if forced() == before {
		t.Fatalf("the burst's heap was not returned")
	}
	if idle := idleHeap(); idle > 8<<20 {
		t.Fatalf("%d bytes beyond the live heap still held after the return", idle)
	}
}

var sink [][]byte

// burst allocates mib MiB and drops it, uncollected.
func burst(mib int) {
	runtime.GC()
	sink = make([][]byte, mib)
	for i := range sink {
		sink[i] = make([]byte, 1<<20)
	}
	sink = nil
}
