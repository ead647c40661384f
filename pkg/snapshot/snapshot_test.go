package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func TestMain(m *testing.M) {
	scryptWorkFactor = 10 // the format is the same; only the key derivation is cheaper
	os.Exit(m.Run())
}

// testEtcd runs a real embedded etcd on free loopback ports with its data in dir.
type testEtcd struct {
	server   *embed.Etcd
	client   *clientv3.Client
	endpoint string
	peerURL  string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startEtcd(t *testing.T, dir, peerURL string) *testEtcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = dir
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	if peerURL == "" {
		peerURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	}
	peer, _ := url.Parse(peerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	te := &testEtcd{server: e, client: c, endpoint: client.String(), peerURL: peerURL}
	t.Cleanup(te.stop)
	return te
}

func (e *testEtcd) stop() {
	if e.server != nil {
		e.client.Close()
		e.server.Close()
		e.server = nil
	}
}

// fixture is a data dir with a PKI and an encryption key, a config file
// naming it, and an etcd holding a few keys.
type fixture struct {
	dir, dataDir, configFile string
	etcd                     *testEtcd
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, dataDir: filepath.Join(dir, "data"), configFile: filepath.Join(dir, "config.yaml")}
	write(t, filepath.Join(f.dataDir, "pki", "ca.key"), "cluster CA key", 0o600)
	write(t, filepath.Join(f.dataDir, "pki", "ca.crt"), "cluster CA cert", 0o644)
	write(t, filepath.Join(f.dataDir, "pki", "etcd", "ca.key"), "etcd CA key", 0o600)
	write(t, filepath.Join(f.dataDir, "pki", "sa.key"), "service-account key", 0o600)
	write(t, filepath.Join(f.dataDir, "secrets", "encryption-key"), "aes key", 0o600)
	write(t, filepath.Join(f.dataDir, "kubeconfig", "admin.conf"), "regenerated at start", 0o600)
	write(t, f.configFile, "apiVersion: vcluster-standalone.io/v1alpha1\nkind: ControlPlaneConfig\ndataDir: "+f.dataDir+"\n", 0o644)
	f.etcd = startEtcd(t, filepath.Join(f.dataDir, "etcd"), "")
	for i := 0; i < 100; i++ {
		if _, err := f.etcd.client.Put(context.Background(), fmt.Sprintf("/registry/configmaps/default/cm-%d", i), strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) save(t *testing.T, file string, passphrase string) *Manifest {
	t.Helper()
	var progress bytes.Buffer
	m, err := Save(context.Background(), file, SaveOptions{
		Client: f.etcd.client, Endpoint: f.etcd.endpoint, DataDir: f.dataDir, DataFiles: []string{"pki", "secrets"},
		ConfigFile: f.configFile, Passphrase: []byte(passphrase), Hostname: "cp1", AdvertiseAddress: "192.0.2.10", Progress: &progress,
	})
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	if !strings.Contains(progress.String(), "SHA-256 verified") || !strings.Contains(progress.String(), "saved "+file) {
		t.Errorf("save progress lacks its steps:\n%s", progress.String())
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v; want 0600", err, st.Mode())
	}
	return m
}

func (f *fixture) restoreOptions(file, passphrase string) RestoreOptions {
	return RestoreOptions{
		File: file, ConfigFile: f.configFile,
		Passphrase: func() ([]byte, error) { return []byte(passphrase), nil },
		EtcdMember: func(*config.ControlPlane) (string, string) { return "test", f.etcd.peerURL },
	}
}

// tree returns path -> content of every file below dir.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = fmt.Sprintf("%v %x", info.Mode(), sha256.Sum256(data))
		}
		return nil
	})
	return out
}

func TestSaveRestoreRoundTrip(t *testing.T) {
	for _, passphrase := range []string{"", "correct horse battery staple"} {
		t.Run(fmt.Sprintf("encrypted=%t", passphrase != ""), func(t *testing.T) {
			f := newFixture(t)
			file := filepath.Join(f.dir, "out", "cluster.snap")
			m := f.save(t, file, passphrase)
			if enc, _ := Encrypted(file); enc != (passphrase != "") {
				t.Errorf("Encrypted = %t", enc)
			}
			if m.Revision < 100 || m.DataDir != f.dataDir {
				t.Errorf("manifest: revision %d, data dir %s", m.Revision, m.DataDir)
			}
			if _, ok := m.Entry(DataEntries + "kubeconfig/admin.conf"); ok {
				t.Errorf("kubeconfigs are regenerated at start and not saved")
			}
			pkiBefore := tree(t, filepath.Join(f.dataDir, "pki"))
			rev := m.Revision

			// The host loses its data dir and config.
			f.etcd.stop()
			if err := os.RemoveAll(f.dataDir); err != nil {
				t.Fatal(err)
			}
			write(t, f.configFile, "# another config\n", 0o644)

			var progress bytes.Buffer
			opts := f.restoreOptions(file, passphrase)
			opts.Progress = &progress
			if _, err := Restore(opts); err != nil {
				t.Fatalf("restore: %v\n%s", err, progress.String())
			}
			if got := tree(t, filepath.Join(f.dataDir, "pki")); fmt.Sprint(got) != fmt.Sprint(pkiBefore) {
				t.Errorf("pki after restore:\n%v\nwant\n%v", got, pkiBefore)
			}
			if data, _ := os.ReadFile(filepath.Join(f.dataDir, "secrets", "encryption-key")); string(data) != "aes key" {
				t.Errorf("encryption key after restore: %q", data)
			}
			if data, _ := os.ReadFile(f.configFile); !strings.Contains(string(data), "dataDir: "+f.dataDir) {
				t.Errorf("config not restored: %q", data)
			}
			kept, _ := filepath.Glob(f.configFile + ".pre-restore-*")
			if len(kept) != 1 {
				t.Errorf("the replaced config was not kept: %v", kept)
			}
			if !config.OwnsDataDir(f.dataDir) {
				t.Errorf("restored data dir not marked as ours")
			}

			e := startEtcd(t, filepath.Join(f.dataDir, "etcd"), f.etcd.peerURL)
			resp, err := e.client.Get(context.Background(), "/registry/configmaps/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil || resp.Count != 100 {
				t.Fatalf("restored etcd: %v, %d keys; want 100", err, resp.Count)
			}
			if resp.Header.Revision < rev+revisionBump {
				t.Errorf("revision %d after restore, want it bumped past %d", resp.Header.Revision, rev+revisionBump)
			}
			// Old revisions are compacted: a watch from before the restore is told so.
			if _, err := e.client.Get(context.Background(), "/registry/configmaps/default/cm-1", clientv3.WithRev(rev)); err == nil {
				t.Errorf("reading a revision from before the restore succeeded; want it compacted")
			}
		})
	}
}

func TestRestoreRefusesBadInputBeforeTouching(t *testing.T) {
	f := newFixture(t)
	plain := filepath.Join(f.dir, "plain.snap")
	f.save(t, plain, "")
	encrypted := filepath.Join(f.dir, "enc.snap")
	f.save(t, encrypted, "right")
	data, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(f.dir, "truncated.snap")
	write(t, truncated, string(data[:len(data)*2/3]), 0o600)
	flipped := []byte(string(data))
	flipped[len(flipped)/2] ^= 0xff
	corruptFile := filepath.Join(f.dir, "corrupt.snap")
	write(t, corruptFile, string(flipped), 0o600)
	encData, _ := os.ReadFile(encrypted)
	encTruncated := filepath.Join(f.dir, "enc-truncated.snap")
	write(t, encTruncated, string(encData[:len(encData)-100]), 0o600)
	junk := filepath.Join(f.dir, "junk.snap")
	write(t, junk, "hello", 0o600)
	f.etcd.stop()

	before := tree(t, f.dir)
	for _, tc := range []struct {
		name, file, passphrase string
		want                   func(error) bool
	}{
		{"truncated", truncated, "", isCorrupt},
		{"bit flipped", corruptFile, "", isCorrupt},
		{"not a snapshot", junk, "", isCorrupt},
		{"wrong passphrase", encrypted, "wrong", func(err error) bool { return errors.Is(err, ErrPassphrase) }},
		{"no passphrase", encrypted, "", func(err error) bool { return errors.Is(err, ErrNeedPassphrase) }},
		{"encrypted, truncated", encTruncated, "right", isCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Restore(f.restoreOptions(tc.file, tc.passphrase))
			if err == nil || !tc.want(err) {
				t.Fatalf("restore: %v; want refusal", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if after := tree(t, f.dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a refused restore changed files")
			}
		})
	}

	t.Run("control plane running", func(t *testing.T) {
		opts := f.restoreOptions(plain, "")
		opts.CheckStopped = func(dir string, c *config.ControlPlane) error {
			if dir != f.dataDir {
				t.Errorf("CheckStopped for %s, want %s", dir, f.dataDir)
			}
			return errors.New("running")
		}
		if _, err := Restore(opts); err == nil || err.Error() != "running" {
			t.Fatalf("restore: %v; want the running error", err)
		}
		if after := tree(t, f.dir); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("a refused restore changed files")
		}
	})

	t.Run("over an existing data dir", func(t *testing.T) {
		if _, err := Restore(f.restoreOptions(encrypted, "right")); err != nil {
			t.Fatal(err)
		}
		backups, _ := filepath.Glob(filepath.Join(f.dataDir, "pre-restore-*", "pki", "ca.key"))
		if len(backups) != 1 {
			t.Errorf("previous pki not kept aside: %v", backups)
		}
	})
}

func isCorrupt(err error) bool {
	var c *CorruptError
	return errors.As(err, &c)
}

func TestVerifyEtcdTrailer(t *testing.T) {
	f := newFixture(t)
	file := filepath.Join(f.dir, "db")
	out, _ := os.Create(file)
	rc, err := f.etcd.client.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if err := verifyEtcdTrailer(file); err != nil {
		t.Fatalf("etcd's own snapshot: %v", err)
	}
	data, _ := os.ReadFile(file)
	data[4096] ^= 1
	os.WriteFile(file, data, 0o600)
	if err := verifyEtcdTrailer(file); err == nil {
		t.Errorf("a changed byte passed the trailer check")
	}
}

func TestPruneKeepsNewestScheduledOnly(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 7; i++ {
		write(t, filepath.Join(dir, ScheduledName(base.Add(time.Duration(i)*time.Hour))), "x", 0o600)
	}
	write(t, filepath.Join(dir, ManualName(base.Add(-time.Hour))), "x", 0o600)
	write(t, filepath.Join(dir, ".snapshot-1.part"), "x", 0o600)
	deleted, err := Prune(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, ScheduledName(base)), filepath.Join(dir, ScheduledName(base.Add(time.Hour)))}
	if fmt.Sprint(deleted) != fmt.Sprint(want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	list, _ := List(dir)
	if len(list) != 6 || list[0].Scheduled || !list[1].Time.Equal(base.Add(2*time.Hour)) {
		t.Errorf("left %+v; want the manual one and the 5 newest scheduled", list)
	}
	if last, ok := LatestScheduled(dir); !ok || !last.Equal(base.Add(6*time.Hour)) {
		t.Errorf("LatestScheduled = %v %t", last, ok)
	}
}
