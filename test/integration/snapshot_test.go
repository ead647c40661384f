package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSnapshotScheduleSaveRestore runs a real control plane with scheduled
// snapshots every 10 s keeping 2: they appear on time and the oldest is
// deleted. Then a snapshot saved by hand is restored onto a wiped data dir,
// after the bad inputs are refused in one line with nothing changed.
func TestSnapshotScheduleSaveRestore(t *testing.T) {
	cp := newControlPlane(t)
	snapDir := filepath.Join(cp.dir, "snapshots")
	// A small quota, so the test can fill it; defragment at any free space.
	appendFile(t, cp.configFile, fmt.Sprintf("etcd:\n  quotaBackendBytes: %d\n  defrag: {threshold: 1}\n  snapshots:\n    interval: 10s\n    retention: 2\n    dir: %s\n", 64<<20, snapDir))
	cp.start()
	cs := cp.client()
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, StringData: map[string]string{"password": "hunter2"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Free space in etcd's file, made certain (a fresh database may have
	// none): big objects deleted and their revisions compacted. The next
	// start defragments.
	fragmentEtcd(t, cp)
	cp.stop()
	if err := os.RemoveAll(snapDir); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	cp.start()
	ready := time.Now()
	mustPoll(t, 20*time.Second, "defragmentation at start", func(context.Context) error {
		if log, _ := os.ReadFile(cp.logPath); !strings.Contains(string(log), "etcd defragmented: ") {
			return fmt.Errorf("no \"etcd defragmented\" in the log")
		}
		return nil
	})
	if out, _, _ := cp.run("status"); !regexp.MustCompile(`etcd database: [0-9.]+ [KM]iB \(.* in use, \d+% free\) of a 64.0 MiB quota`).MatchString(out) || !strings.Contains(out, "etcd alarms: none") {
		t.Errorf("status does not show etcd's database against its quota:\n%s", out)
	}

	// Scheduled: the first 10 s after start, then every 10 s; 2 kept.
	var seen []string
	mustPoll(t, 60*time.Second, "three scheduled snapshots", func(context.Context) error {
		names := scheduledSnapshots(t, snapDir)
		for _, n := range names {
			if !contains(seen, n) {
				seen = append(seen, n)
			}
		}
		if len(seen) < 3 {
			return fmt.Errorf("seen %v", seen)
		}
		return nil
	})
	sort.Strings(seen)
	first := snapshotTime(t, seen[0])
	// Due 10 s after the component starts, between start and ready.
	if first.Before(begin.Add(9*time.Second).Truncate(time.Second)) || first.After(ready.Add(12*time.Second)) {
		t.Errorf("first scheduled snapshot at %s; started at %s, ready at %s: want it 10s after the start", first, begin, ready)
	}
	if gap := snapshotTime(t, seen[2]).Sub(snapshotTime(t, seen[1])); gap < 9*time.Second || gap > 14*time.Second {
		t.Errorf("scheduled snapshots %s apart, want ~10s", gap)
	}
	mustPoll(t, 10*time.Second, "retention of 2", func(context.Context) error {
		if left := scheduledSnapshots(t, snapDir); len(left) > 2 || contains(left, seen[0]) {
			return fmt.Errorf("left %v after %v: want the oldest deleted, 2 kept", left, seen)
		}
		return nil
	})
	if out, _, err := cp.run("snapshot", "list"); err != nil || !strings.Contains(out, seen[2]) || !strings.Contains(out, "scheduled") {
		t.Errorf("snapshot list: %v\n%s", err, out)
	}

	// Saved by hand, encrypted; progress and duration printed.
	file := filepath.Join(cp.dir, "backup", "cluster.snap")
	save := exec.Command(binary, "snapshot", "save", file, "--encrypt")
	save.Env = append(os.Environ(), "VCLUSTER_STANDALONE_CONFIG="+cp.configFile, "VCS_SNAPSHOT_PASSPHRASE=right one")
	out, err := save.CombinedOutput()
	if err != nil || !regexp.MustCompile(`etcd database at revision \d+: .* in [0-9.]+s, SHA-256 verified`).Match(out) ||
		!regexp.MustCompile(`saved .*cluster.snap \(.*, encrypted\) in [0-9.]+s`).Match(out) {
		t.Fatalf("snapshot save: %v\n%s", err, out)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v %v, want mode 0600", err, st)
	}

	refused := func(what, want string, env []string, args ...string) {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = append(append(os.Environ(), "VCLUSTER_STANDALONE_CONFIG="+cp.configFile), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		before := fileDigests(t, cp.dataDir)
		beforeConfig, _ := os.ReadFile(cp.configFile)
		err := cmd.Run()
		msg := strings.TrimSpace(stderr.String())
		if err == nil || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, want) {
			t.Errorf("%s: err %v, stderr %q; want one line with %q", what, err, msg, want)
		}
		if after := fileDigests(t, cp.dataDir); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s changed the data dir", what)
		}
		if afterConfig, _ := os.ReadFile(cp.configFile); string(afterConfig) != string(beforeConfig) {
			t.Errorf("%s changed the config", what)
		}
	}
	runningCmd := exec.Command(binary, "snapshot", "restore", file)
	runningCmd.Env = append(os.Environ(), "VCLUSTER_STANDALONE_CONFIG="+cp.configFile, "VCS_SNAPSHOT_PASSPHRASE=right one")
	if out, err := runningCmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "the control plane is running") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("restore on a running control plane: %v\n%s", err, out)
	}

	cp.stop()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(cp.dir, "truncated.snap")
	writeFile(t, truncated, string(data[:len(data)/2]))
	refused("truncated", "is corrupt or truncated", []string{"VCS_SNAPSHOT_PASSPHRASE=right one"}, "snapshot", "restore", truncated)
	refused("wrong passphrase", "wrong passphrase", []string{"VCS_SNAPSHOT_PASSPHRASE=wrong"}, "snapshot", "restore", file)

	// The data dir is lost; the snapshot brings the same cluster back.
	if err := os.RemoveAll(cp.dataDir); err != nil {
		t.Fatal(err)
	}
	restore := exec.Command(binary, "snapshot", "restore", file)
	restore.Env = append(os.Environ(), "VCLUSTER_STANDALONE_CONFIG="+cp.configFile, "VCS_SNAPSHOT_PASSPHRASE=right one")
	if out, err := restore.CombinedOutput(); err != nil || !strings.Contains(string(out), "restored in") {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	cp.start()
	cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kept", metav1.GetOptions{})
	if err != nil || cm.Data["k"] != "v" {
		t.Fatalf("ConfigMap after restore: %v %v", err, cm)
	}
	got, err := cs.CoreV1().Secrets("default").Get(ctx, "kept", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != "hunter2" || got.UID != secret.UID {
		t.Fatalf("Secret after restore: %v", err)
	}
	if raw := readEtcdKey(t, cp, "/registry/secrets/default/kept"); !strings.HasPrefix(raw, "k8s:enc:") {
		t.Errorf("restored Secret is not encrypted at rest: %q", raw[:min(len(raw), 20)])
	}

	// Filled to its quota, etcd refuses writes; status says why.
	big := strings.Repeat("x", 900<<10)
	var fillErr error
	for i := 0; i < 200 && fillErr == nil; i++ {
		_, fillErr = cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i)}, Data: map[string]string{"x": big}}, metav1.CreateOptions{})
	}
	if fillErr == nil || !strings.Contains(fillErr.Error(), "database space exceeded") {
		t.Fatalf("filling etcd past its quota: %v", fillErr)
	}
	if out, _, err := cp.run("status"); err == nil || !strings.Contains(out, "etcd alarms: NOSPACE") {
		t.Errorf("status with etcd full: %v\n%s", err, out)
	}
}

// fragmentEtcd leaves several MiB free inside etcd's database file: big
// ConfigMaps created and deleted, then every old revision compacted away.
func fragmentEtcd(t *testing.T, cp *controlPlane) {
	t.Helper()
	ctx := context.Background()
	cs := cp.client()
	big := strings.Repeat("x", 900<<10)
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("churn-%d", i)
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"x": big}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	client := etcdClient(t, cp)
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := client.Get(ctx, "compact-marker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("etcd compact: %v", err)
	}
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

func scheduledSnapshots(t *testing.T, dir string) []string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, "scheduled-*.snap"))
	for i, m := range matches {
		matches[i] = filepath.Base(m)
	}
	return matches
}

func snapshotTime(t *testing.T, name string) time.Time {
	t.Helper()
	ts, err := time.Parse("20060102T150405Z", strings.TrimSuffix(strings.TrimPrefix(name, "scheduled-"), ".snap"))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
