package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// inProcess runs one upstream server's Run function in a goroutine. A return
// or panic that we did not ask for is reported on Failed, so the manager can
// shut the whole process down instead of leaving it half alive.
type inProcess struct {
	cancel   context.CancelFunc
	done     chan struct{}
	failed   chan error
	err      error // why run returned; read only after done is closed
	stopping atomic.Bool
}

func newInProcess() *inProcess {
	return &inProcess{done: make(chan struct{}), failed: make(chan error, 1)}
}

func (p *inProcess) run(run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return run(ctx)
		}()
		if err == nil {
			err = errors.New("exited unexpectedly")
		}
		p.err = err
		if !p.stopping.Load() {
			p.failed <- err
		}
		close(p.failed)
	}()
}

// Failed yields the error of an unrequested exit; it is closed after Stop.
func (p *inProcess) Failed() <-chan error { return p.failed }

// exitError returns why run returned, or nil while it still runs.
func (p *inProcess) exitError() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// stop cancels the server's context and waits for Run to return.
func (p *inProcess) stop(timeout time.Duration) error {
	if p.cancel == nil {
		return nil
	}
	p.stopping.Store(true)
	p.cancel()
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("did not stop within %s", timeout)
	}
}

// settleTimeout bounds the wait of a settleBeforeStop server: it matters only
// for a stop during start, when the API server's post-start hooks still run.
const settleTimeout = 15 * time.Second

// upstreamServer is the part the in-process Kubernetes servers share: each
// embeds it and only builds its options and Run function in Start.
type upstreamServer struct {
	args        []string
	health      healthProbe
	stopTimeout time.Duration
	// settleBeforeStop: wait until healthy before cancelling. kube-apiserver
	// exits the whole process (klog.Fatal) when its context is cancelled while
	// post-start hooks still run, so a stop during start lets it finish first.
	settleBeforeStop bool
	proc             *inProcess
}

func (u *upstreamServer) Init(context.Context) error { return nil }

func (u *upstreamServer) run(run func(ctx context.Context) error) {
	u.proc = newInProcess()
	u.proc.run(run)
}

func (u *upstreamServer) Ready(ctx context.Context) error { return u.health.wait(ctx, u.proc) }

func (u *upstreamServer) Failed() <-chan error { return u.proc.Failed() }

func (u *upstreamServer) Stop() error {
	if u.proc == nil {
		return nil
	}
	if u.settleBeforeStop {
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		u.health.wait(ctx, u.proc) // best effort: stop anyway when it times out
		cancel()
	}
	return u.proc.stop(u.stopTimeout)
}
