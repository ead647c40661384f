package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// EphemeralState remembers, in a file, which volumes of the pool are CSI
// inline ephemeral volumes (made by NodePublishVolume, removed by
// NodeUnpublishVolume), so a restarted node-agent still removes them and
// the reconciler never takes them for orphans.
type EphemeralState struct {
	path string
	mu   sync.Mutex
	ids  []string
}

// LoadEphemeralState reads the state file; a missing one is empty.
func LoadEphemeralState(path string) (*EphemeralState, error) {
	st := &EphemeralState{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &st.ids); err != nil {
		return nil, fmt.Errorf("ephemeral volume state %s: %w", path, err)
	}
	return st, nil
}

func (e *EphemeralState) Has(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.ids, id)
}

// Add records id before its volume is made, so a crash in between leaves
// nothing untracked.
func (e *EphemeralState) Add(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if slices.Contains(e.ids, id) {
		return nil
	}
	e.ids = append(e.ids, id)
	return e.save()
}

func (e *EphemeralState) Remove(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ids = slices.DeleteFunc(e.ids, func(s string) bool { return s == id })
	return e.save()
}

// IDs lists the inline ephemeral volumes.
func (e *EphemeralState) IDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ids)
}

func (e *EphemeralState) save() error {
	data, err := json.Marshal(e.ids)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(e.path, data, 0o600)
}
