package component

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake records lifecycle calls into a shared journal.
type fake struct {
	name       string
	journal    *journal
	initErr    error
	startErr   error
	readyErr   error
	readyDelay time.Duration
	stopBlock  chan struct{} // Stop waits for it when set
	failed     chan error
}

type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.events, " ")
}

func (f *fake) Name() string { return f.name }
func (f *fake) Init(context.Context) error {
	f.journal.add("init:" + f.name)
	return f.initErr
}
func (f *fake) Start(context.Context) error {
	f.journal.add("start:" + f.name)
	return f.startErr
}
func (f *fake) Ready(ctx context.Context) error {
	select {
	case <-time.After(f.readyDelay):
	case <-ctx.Done():
		return ctx.Err()
	}
	f.journal.add("ready:" + f.name)
	return f.readyErr
}
func (f *fake) Failed() <-chan error { return f.failed }
func (f *fake) Stop() error {
	if f.stopBlock != nil {
		<-f.stopBlock
	}
	f.journal.add("stop:" + f.name)
	return nil
}

// TestStopTimeout: a Stop that hangs is reported and the next component is
// stopped anyway.
func TestStopTimeout(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "a", "b")
	fs[1].stopBlock = make(chan struct{})
	defer close(fs[1].stopBlock)
	var progress bytes.Buffer
	m := NewManager(time.Second, &progress, asComponents(fs)...)
	m.StopTimeout = 50 * time.Millisecond
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := m.Stop()
	if err == nil || !strings.Contains(err.Error(), "failed to stop b: did not stop within 50ms") {
		t.Fatalf("Stop: %v", err)
	}
	if !strings.Contains(j.String(), "stop:a") || !strings.Contains(progress.String(), "b: did not stop within") {
		t.Fatalf("a not stopped after b hung: %s\n%s", j, progress.String())
	}
}

func fakes(j *journal, names ...string) []*fake {
	var out []*fake
	for _, n := range names {
		out = append(out, &fake{name: n, journal: j, failed: make(chan error, 1)})
	}
	return out
}

func asComponents(fs []*fake) []Component {
	out := make([]Component, len(fs))
	for i, f := range fs {
		out[i] = f
	}
	return out
}

func TestStartInOrderStopInReverse(t *testing.T) {
	j := &journal{}
	var progress bytes.Buffer
	m := NewManager(time.Second, &progress, asComponents(fakes(j, "a", "b", "c"))...)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	want := "init:a init:b init:c start:a ready:a start:b ready:b start:c ready:c stop:c stop:b stop:a"
	if got := j.String(); got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(progress.String(), "starting b...") || !strings.Contains(progress.String(), "b ready in") {
		t.Fatalf("progress lines missing:\n%s", progress.String())
	}
	if !strings.Contains(progress.String(), "b stopped in") {
		t.Fatalf("stop lines missing:\n%s", progress.String())
	}
	if err := m.Stop(); err != nil || strings.Count(j.String(), "stop:a") != 1 {
		t.Fatal("a second Stop must be a no-op")
	}
}

func TestStartFailureStopsWhatStarted(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "a", "b", "c")
	fs[1].startErr = errors.New("boom")
	err := NewManager(time.Second, nil, asComponents(fs)...).Start(context.Background())
	if err == nil || err.Error() != "failed to start b: boom" {
		t.Fatalf("error %v", err)
	}
	// b's Start may have begun work, so it is stopped too; c never started.
	want := "init:a init:b init:c start:a ready:a start:b stop:b stop:a"
	if got := j.String(); got != want {
		t.Fatalf("lifecycle\n got %s\nwant %s", got, want)
	}
}

func TestInitFailureStartsNothing(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "a", "b")
	fs[1].initErr = errors.New("bad config")
	err := NewManager(time.Second, nil, asComponents(fs)...).Start(context.Background())
	if err == nil || err.Error() != "failed to prepare b: bad config" {
		t.Fatalf("error %v", err)
	}
	if got := j.String(); got != "init:a init:b" {
		t.Fatalf("lifecycle %s", got)
	}
}

func TestReadyTimeout(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "slow")
	fs[0].readyDelay = time.Hour
	err := NewManager(50*time.Millisecond, nil, asComponents(fs)...).Start(context.Background())
	if err == nil || err.Error() != "slow was not ready within 50ms" {
		t.Fatalf("error %v", err)
	}
	if !strings.HasSuffix(j.String(), "stop:slow") {
		t.Fatalf("timed-out component not stopped: %s", j)
	}
}

func TestFailureWhileWaitingForReady(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "etcd", "apiserver")
	fs[1].readyDelay = time.Hour
	m := NewManager(time.Minute, nil, asComponents(fs)...)
	go func() {
		time.Sleep(50 * time.Millisecond)
		fs[0].failed <- errors.New("disk full")
	}()
	err := m.Start(context.Background())
	if err == nil || err.Error() != "etcd failed: disk full" {
		t.Fatalf("error %v", err)
	}
}

func TestFailedAfterStart(t *testing.T) {
	j := &journal{}
	fs := fakes(j, "a", "b")
	m := NewManager(time.Second, nil, asComponents(fs)...)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs[1].failed <- errors.New("lost")
	select {
	case err := <-m.Failed():
		if err.Error() != "b failed: lost" {
			t.Fatalf("error %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("failure not reported")
	}
	// A component that closes Failed (a requested stop) is not a failure.
	close(fs[0].failed)
	select {
	case err := <-m.Failed():
		t.Fatalf("closed channel reported as failure: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}
