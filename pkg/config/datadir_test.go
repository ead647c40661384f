package config

import (
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
