package controlplane

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/snapshot"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/version"
)

// snapshotDataFiles are what a snapshot takes from the data dir besides
// etcd: the whole PKI (every CA and key, the service-account key pair, and
// whatever a CA rotation keeps there) and the secrets-encryption key. The
// rest (kubeconfigs, component configs) start writes again from these.
var snapshotDataFiles = []string{"pki", "secrets"}

// SaveSnapshot writes a snapshot of the running control plane to file.
// configFile is saved with it when it exists.
func SaveSnapshot(ctx context.Context, c *config.ControlPlane, configFile, file string, passphrase []byte, progress io.Writer) (*snapshot.Manifest, error) {
	client, endpoint, err := newEtcdClient(c)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	hostname, _ := os.Hostname()
	return snapshot.Save(ctx, file, snapshot.SaveOptions{
		Client: client, Endpoint: endpoint,
		DataDir: c.DataDir, DataFiles: snapshotDataFiles, ConfigFile: configFile,
		Passphrase: passphrase, Version: version.Version, Hostname: hostname, AdvertiseAddress: c.AdvertiseAddress,
		Progress: progress,
	})
}

// RestoreSnapshot restores file onto this host: the data dir the snapshot
// names, and its config to configFile. It refuses while a control plane runs.
func RestoreSnapshot(file, configFile string, passphrase func() ([]byte, error), progress io.Writer) (*snapshot.Manifest, error) {
	return snapshot.Restore(snapshot.RestoreOptions{
		File: file, Passphrase: passphrase, ConfigFile: configFile,
		EtcdMember: func(c *config.ControlPlane) (string, string) {
			return etcdMemberName, etcdURL(c.Ports.EtcdPeer)
		},
		CheckStopped: checkStopped,
		Progress:     progress,
	})
}

// ReadPassphrase reads a passphrase file: its first line, which must not be empty.
func ReadPassphrase(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the passphrase file: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return []byte(line), nil
}

// scheduledSnapshots saves a snapshot every etcd.snapshots.interval into
// etcd.snapshots.dir and keeps the newest etcd.snapshots.retention of them.
// The schedule survives restarts: the next one is due an interval after the
// newest scheduled snapshot in the directory.
type scheduledSnapshots struct {
	c          *config.ControlPlane
	configFile string
	progress   io.Writer
	now        func() time.Time

	stop func()
	done chan struct{}
	once sync.Once
}

func (s *scheduledSnapshots) Name() string               { return "scheduled snapshots" }
func (s *scheduledSnapshots) Init(context.Context) error { return nil }

func (s *scheduledSnapshots) Start(context.Context) error {
	interval := s.c.Etcd.SnapshotInterval()
	if interval == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	first := s.firstDue(interval)
	fmt.Fprintf(s.progress, "scheduled snapshots every %s into %s (keeping %d); next at %s\n", interval, s.c.Etcd.Snapshots.Dir, s.c.Etcd.Snapshots.Retention, first.UTC().Format(time.RFC3339))
	go s.loop(ctx, first, interval)
	return nil
}

// firstDue is an interval after the newest scheduled snapshot; one missed
// while the control plane was down is taken shortly after start.
func (s *scheduledSnapshots) firstDue(interval time.Duration) time.Time {
	now := s.now()
	last, ok := snapshot.LatestScheduled(s.c.Etcd.Snapshots.Dir)
	if !ok {
		return now.Add(interval)
	}
	if due := last.Add(interval); due.After(now) {
		return due
	}
	return now.Add(min(interval, time.Minute))
}

func (s *scheduledSnapshots) loop(ctx context.Context, due time.Time, interval time.Duration) {
	defer close(s.done)
	for {
		timer := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		taken := s.now()
		if err := s.takeOne(ctx, taken); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "scheduled snapshot failed; the next is taken on schedule")
		}
		due = taken.Add(interval)
	}
}

func (s *scheduledSnapshots) takeOne(ctx context.Context, at time.Time) error {
	snaps := s.c.Etcd.Snapshots
	var passphrase []byte
	if snaps.PassphraseFile != "" {
		p, err := ReadPassphrase(snaps.PassphraseFile)
		if err != nil {
			return err
		}
		passphrase = p
	}
	file := filepath.Join(snaps.Dir, snapshot.ScheduledName(at))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	var log strings.Builder
	if _, err := SaveSnapshot(ctx, s.c, s.configFile, file, passphrase, &log); err != nil {
		return err
	}
	klog.InfoS("scheduled snapshot saved", "file", file, "steps", strings.TrimSpace(log.String()))
	deleted, err := snapshot.Prune(snaps.Dir, snaps.Retention)
	for _, d := range deleted {
		klog.InfoS("deleted scheduled snapshot beyond retention", "file", d, "retention", snaps.Retention)
	}
	return err
}

func (s *scheduledSnapshots) Stop() error {
	s.once.Do(func() {
		if s.stop != nil {
			s.stop()
			<-s.done
		}
	})
	return nil
}
