// Package component defines the lifecycle every long-running part of the
// distribution implements, and the manager that starts and stops them in order.
package component

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Component is one long-running part (etcd, kube-apiserver, kubelet, ...).
//
//   - Init prepares (config files, directories) and may fail, but starts nothing.
//   - Start launches the work and returns while it goes on.
//   - Stop ends it; it is safe in any state and may be called more than once.
type Component interface {
	Name() string
	Init(ctx context.Context) error
	Start(ctx context.Context) error
	Stop() error
}

// Readier is implemented by components that take time to become usable;
// Ready blocks until the component is ready, fails, or ctx ends.
type Readier interface {
	Ready(ctx context.Context) error
}

// Failer is implemented by components that can die on their own after Start;
// the channel yields the reason once.
type Failer interface {
	Failed() <-chan error
}

// Manager starts components in order and stops them in reverse.
type Manager struct {
	// StopTimeout, when set, bounds each component's Stop: one that takes
	// longer is reported and left to end with the process, and the next is
	// stopped. Zero waits for every Stop.
	StopTimeout time.Duration

	components   []Component
	started      []Component
	readyTimeout time.Duration
	progress     io.Writer
	failed       chan error
}

// NewManager returns a manager that waits up to readyTimeout for each
// component to become ready and reports progress lines to progress.
func NewManager(readyTimeout time.Duration, progress io.Writer, components ...Component) *Manager {
	if progress == nil {
		progress = io.Discard
	}
	return &Manager{components: components, readyTimeout: readyTimeout, progress: progress, failed: make(chan error, len(components))}
}

// Start initialises every component, then starts each in order and waits for
// it to be ready. If any step fails, what was started is stopped again.
func (m *Manager) Start(ctx context.Context) error {
	for _, c := range m.components {
		if err := c.Init(ctx); err != nil {
			return fmt.Errorf("failed to prepare %s: %w", c.Name(), err)
		}
	}
	for _, c := range m.components {
		begin := time.Now()
		fmt.Fprintf(m.progress, "starting %s...\n", c.Name())
		if err := m.startOne(ctx, c); err != nil {
			return errors.Join(err, m.Stop())
		}
		state := "started"
		if _, ok := c.(Readier); ok {
			state = "ready"
		}
		fmt.Fprintf(m.progress, "%s %s in %.1fs\n", c.Name(), state, time.Since(begin).Seconds())
	}
	return nil
}

func (m *Manager) startOne(ctx context.Context, c Component) error {
	if err := c.Start(ctx); err != nil {
		m.started = append(m.started, c)
		return fmt.Errorf("failed to start %s: %w", c.Name(), err)
	}
	m.started = append(m.started, c)
	if f, ok := c.(Failer); ok {
		go m.watch(c.Name(), f.Failed())
	}
	r, ok := c.(Readier)
	if !ok {
		return nil
	}
	readyCtx, cancel := context.WithTimeout(ctx, m.readyTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Ready(readyCtx) }()
	select {
	case err := <-done:
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%s was not ready within %s", c.Name(), m.readyTimeout)
			}
			return fmt.Errorf("%s did not become ready: %w", c.Name(), err)
		}
		return nil
	case err := <-m.failed:
		// Something that already runs died while we waited: report it.
		m.failed <- err
		return err
	}
}

func (m *Manager) watch(name string, failed <-chan error) {
	err, ok := <-failed
	if !ok {
		return
	}
	if err == nil {
		err = errors.New("exited unexpectedly")
	}
	m.failed <- fmt.Errorf("%s failed: %w", name, err)
}

// Failed yields the first error of any started component that died on its own.
func (m *Manager) Failed() <-chan error {
	return m.failed
}

// Stop stops every started component in reverse order and returns all
// errors. Each stop is reported with its duration, so a slow stop is visible.
func (m *Manager) Stop() error {
	var errs []error
	for i := len(m.started) - 1; i >= 0; i-- {
		c := m.started[i]
		begin := time.Now()
		if err := m.stopOne(c); err != nil {
			errs = append(errs, fmt.Errorf("failed to stop %s: %w", c.Name(), err))
			fmt.Fprintf(m.progress, "%s: %v\n", c.Name(), err)
			continue
		}
		fmt.Fprintf(m.progress, "%s stopped in %.1fs\n", c.Name(), time.Since(begin).Seconds())
	}
	m.started = nil
	return errors.Join(errs...)
}

func (m *Manager) stopOne(c Component) error {
	if m.StopTimeout <= 0 {
		return c.Stop()
	}
	done := make(chan error, 1)
	go func() { done <- c.Stop() }()
	select {
	case err := <-done:
		return err
	case <-time.After(m.StopTimeout):
		return fmt.Errorf("did not stop within %s; left to end with the process", m.StopTimeout)
	}
}
