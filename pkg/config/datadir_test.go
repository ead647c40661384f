package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemDataDirsRefused: a data dir that is / or a system directory (as
// written, or after cleaning) is refused for the control plane, its local
// node and a node, in one line naming the field and the value; a directory
// of its own below them is fine.
func TestSystemDataDirsRefused(t *testing.T) {
	bad := []string{"/", "/var", "/usr", "/etc", "/var/", "//usr", "/var/lib/../../var", "/lib", "/lib64", "/libx32", "/tmp/.", "/var/lib", "/usr/local", "/home", "/root", "/opt", "/run", "/boot", "/srv", "/proc", "/sys", "/dev", "/sbin", "/bin"}
	for _, dir := range bad {
		for _, field := range []string{"dataDir", "localNode.dataDir"} {
			c := &ControlPlane{}
			SetDefaults(c, noAddress)
			if field == "dataDir" {
				c.DataDir = dir
			} else {
				c.LocalNode.DataDir = dir
			}
			assertOneDataDirError(t, "control plane "+field, c.Validate(), field, dir)
		}
		n := validNode()
		n.DataDir = dir
		assertOneDataDirError(t, "node dataDir", n.Validate(), "dataDir", dir)
	}
	for _, dir := range []string{"/var/lib/vcluster-standalone", "/var/lib/node-agent", "/srv/k8s", "/opt/vcs/data", "/library", "/home/ops/vcs"} {
		if err := CheckDataDir("dataDir", dir); err != nil {
			t.Errorf("%s refused: %v", dir, err)
		}
	}
}

func assertOneDataDirError(t *testing.T, what string, errs []error, field, dir string) {
	t.Helper()
	want := field + `: invalid value "` + dir + `": must be a directory of its own such as /var/lib/<name>`
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), want) || strings.Contains(errs[0].Error(), "\n") {
		t.Errorf("%s %q: want one line starting %q, got %v", what, dir, want, errs)
	}
}

// TestClaimDataDir: a new or empty directory is marked ours, as is one with
// our layout (from before the marker); a directory with someone else's
// files is not, and stays as it was.
func TestClaimDataDir(t *testing.T) {
	root := t.TempDir()
	mustClaim := func(dir string, want bool) {
		t.Helper()
		ours, err := ClaimDataDir(dir, "pki")
		if err != nil || ours != want {
			t.Fatalf("ClaimDataDir(%s) = %v, %v; want %v", dir, ours, err, want)
		}
		if OwnsDataDir(dir) != want {
			t.Fatalf("OwnsDataDir(%s) = %v after the claim, want %v", dir, !want, want)
		}
	}
	fresh := filepath.Join(root, "new", "data")
	mustClaim(fresh, true)
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("new data dir: %v %v, want mode 0700", st, err)
	}
	mustClaim(fresh, true) // again: still ours

	empty := filepath.Join(root, "empty")
	os.Mkdir(empty, 0o755)
	mustClaim(empty, true)

	old := filepath.Join(root, "old")
	os.MkdirAll(filepath.Join(old, "pki"), 0o700)
	os.WriteFile(filepath.Join(old, "kubelet.kubeconfig"), nil, 0o600)
	mustClaim(old, true)

	foreign := filepath.Join(root, "foreign")
	os.Mkdir(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "thesis.tex"), []byte("years of work"), 0o644)
	mustClaim(foreign, false)
	if entries, _ := os.ReadDir(foreign); len(entries) != 1 {
		t.Errorf("a foreign directory was changed: %v", entries)
	}
	// A marker that is a symlink or directory does not count.
	odd := filepath.Join(root, "odd")
	os.MkdirAll(filepath.Join(odd, DataDirMarker), 0o755)
	if OwnsDataDir(odd) {
		t.Error("a directory named like the marker counts as the marker")
	}
}
