//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Tests run in file order, then source order: this file's tests follow the
// user's path on the cluster `lab up` installed; zz_down_test.go runs last.

func TestControlPlaneReadyFromHost(t *testing.T) {
	track(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r := readyz(ctx); r.code != 0 || r.stdout != "ok" {
		t.Fatalf("kubectl get --raw /readyz through the lab network: %s", r)
	}
	if got := mustInNode(t, cpNode, "systemctl", "is-active", service); got != "active" {
		t.Fatalf("systemctl is-active %s = %q", service, got)
	}
	if got := mustInNode(t, cpNode, "systemctl", "is-enabled", service); got != "enabled" {
		t.Fatalf("systemctl is-enabled %s = %q", service, got)
	}
}

func TestServiceUnitAsInstalled(t *testing.T) {
	track(t)
	out := mustInNode(t, cpNode, "systemctl", "show", service,
		"-p", "Type,Delegate,KillMode,Restart,LimitNOFILE,TasksMax,EnvironmentFiles,After,Wants")
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "=")
		props[k] = v
	}
	want := map[string]string{"Type": "notify", "Delegate": "yes", "KillMode": "process",
		"Restart": "always", "LimitNOFILE": "1048576", "TasksMax": "infinity"}
	for k, v := range want {
		if props[k] != v {
			t.Errorf("%s=%q, want %q", k, props[k], v)
		}
	}
	for _, k := range []string{"After", "Wants"} {
		if !strings.Contains(props[k], "network-online.target") {
			t.Errorf("%s=%q lacks network-online.target", k, props[k])
		}
	}
	if !strings.Contains(props["EnvironmentFiles"], "/etc/vcluster-standalone/vcluster-standalone.env") {
		t.Errorf("EnvironmentFiles=%q", props["EnvironmentFiles"])
	}
	if mode := mustInNode(t, cpNode, "stat", "-c", "%a %U", "/etc/vcluster-standalone/vcluster-standalone.env"); mode != "600 root" {
		t.Errorf("environment file mode/owner = %q, want 600 root", mode)
	}
	if mode := mustInNode(t, cpNode, "stat", "-c", "%a", "/etc/vcluster-standalone/admin.kubeconfig"); mode != "600" {
		t.Errorf("admin kubeconfig mode = %q, want 600", mode)
	}
	if r := inNode(t, cpNode, "systemd-analyze", "verify", "/etc/systemd/system/vcluster-standalone.service"); r.code != 0 || r.stderr != "" {
		t.Errorf("systemd-analyze verify: %s", r)
	}
	// The unit on disk is byte for byte what the installed binary embeds.
	onDisk := mustInNode(t, cpNode, "cat", "/etc/systemd/system/vcluster-standalone.service")
	embedded := mustInNode(t, cpNode, "vcluster-standalone", "unit", "vcluster-standalone.service")
	if onDisk != embedded {
		t.Errorf("installed unit differs from `vcluster-standalone unit`")
	}
}

func TestRecoversAfterRestart(t *testing.T) {
	track(t)
	before := mainPID(t)
	start := time.Now()
	mustInNode(t, cpNode, "systemctl", "restart", service)
	waitReady(t, 3*time.Minute)
	if after := mainPID(t); after == before || after == "0" {
		t.Fatalf("MainPID %s -> %s: not restarted", before, after)
	}
	t.Logf("systemctl restart -> ready from the host in %s", time.Since(start).Round(100*time.Millisecond))
}

// Type=notify: `systemctl start` returns once the service said READY=1, and
// READY=1 means /readyz is ok. A user's script relies on exactly that.
func TestStartReturnsOnlyWhenReady(t *testing.T) {
	track(t)
	mustInNode(t, cpNode, "systemctl", "restart", service)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := readyz(ctx); r.code != 0 || r.stdout != "ok" {
		t.Errorf("right after `systemctl restart` returned, /readyz: %s", r)
	}
	waitReady(t, 3*time.Minute)
}

func TestRecoversAfterKill9(t *testing.T) {
	track(t)
	waitReady(t, 3*time.Minute)
	before := mainPID(t)
	start := time.Now()
	mustInNode(t, cpNode, "kill", "-9", before)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		after := mainPID(t)
		if after != before && after != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new main process 3m after kill -9 of %s", before)
		}
		time.Sleep(300 * time.Millisecond)
	}
	waitReady(t, 3*time.Minute)
	t.Logf("kill -9 -> ready again from the host in %s", time.Since(start).Round(100*time.Millisecond))
}

// putMarker stores a ConfigMap that must survive re-installs and upgrades.
func putMarker(t *testing.T, name string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"kept": "yes"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := clientset(t).CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ConfigMap %s: %v", name, err)
	}
}

func markerKept(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cm, err := clientset(t).CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil || cm.Data["kept"] != "yes" {
		t.Fatalf("ConfigMap %s lost: %v", name, err)
	}
}

// caHashes prints the hashes of the cluster's CA certificates.
const caHashes = "cd /var/lib/vcluster-standalone/pki && sha256sum *ca*.crt"

func TestInstallRerunIsHarmless(t *testing.T) {
	track(t)
	waitReady(t, 3*time.Minute)
	putMarker(t, "e2e-rerun")
	caBefore := mustInNode(t, cpNode, "sh", "-c", caHashes)
	pid := mainPID(t)
	out := mustInNode(t, cpNode, "sh", installSh, "--binary-dir", binDir)
	if !strings.Contains(out, "is up to date") || !strings.Contains(out, "is ready") {
		t.Errorf("re-run output does not say up to date and ready:\n%s", out)
	}
	if got := mainPID(t); got != pid {
		t.Errorf("re-run with nothing changed restarted the service (MainPID %s -> %s)", pid, got)
	}
	// A --url that is not https is refused in one line, before anything is
	// fetched or changed (the binary would run as root unchecked).
	r := inNode(t, cpNode, "sh", installSh, "--url", "file://"+binDir)
	oneLineError(t, "--url file://", r, "--url must be an https:// URL")
	if got := mainPID(t); got != pid {
		t.Errorf("a refused --url restarted the service (MainPID %s -> %s)", pid, got)
	}
	markerKept(t, "e2e-rerun")
	caAfter := mustInNode(t, cpNode, "sh", "-c", caHashes)
	if caBefore != caAfter || caBefore == "" {
		t.Errorf("CA changed or missing across re-install: %q -> %q", caBefore, caAfter)
	}
}

func TestInstallUpgradesInPlace(t *testing.T) {
	track(t)
	waitReady(t, 3*time.Minute)
	putMarker(t, "e2e-upgrade")
	pid := mainPID(t)
	// A different binary (same program, one trailing byte more) is an upgrade.
	mustInNode(t, cpNode, "sh", "-c", "mkdir -p /tmp/upgrade && cp "+binDir+"/vcluster-standalone /tmp/upgrade/ && printf x >> /tmp/upgrade/vcluster-standalone")
	defer inNode(t, cpNode, "rm", "-rf", "/tmp/upgrade")
	start := time.Now()
	out := mustInNode(t, cpNode, "sh", installSh, "--binary-dir", "/tmp/upgrade")
	if !strings.Contains(out, "restarting") {
		t.Errorf("upgrade output does not mention the restart:\n%s", out)
	}
	waitReady(t, 3*time.Minute)
	t.Logf("upgrade in place -> ready in %s", time.Since(start).Round(100*time.Millisecond))
	if got := mainPID(t); got == pid {
		t.Errorf("upgrade did not restart the service (MainPID still %s)", pid)
	}
	if same := inNode(t, cpNode, "cmp", "-s", "/tmp/upgrade/vcluster-standalone", "/usr/local/bin/vcluster-standalone"); same.code != 0 {
		t.Errorf("installed binary is not the upgraded one")
	}
	markerKept(t, "e2e-upgrade")
	markerKept(t, "e2e-rerun")
}

func TestInstallErrorsAreOneLine(t *testing.T) {
	track(t)
	cases := []struct {
		name string
		cmd  []string
		want string
	}{
		{"without root", []string{"runuser", "-u", "nobody", "--", "sh", installSh, "--binary-dir", binDir}, "must run as root"},
		{"without systemd", []string{"unshare", "-m", "sh", "-c",
			"mount -t tmpfs none /run/systemd && exec sh " + installSh + " --binary-dir " + binDir}, "systemd is not running"},
		{"unknown flag", []string{"sh", installSh, "--no-such-flag"}, "unknown flag '--no-such-flag'"},
		{"flag without value", []string{"sh", installSh, "--binary-dir"}, "flag --binary-dir needs a value"},
		{"bad token", []string{"sh", installSh, "--join", "https://10.123.0.10:6443", "--token", "nope",
			"--ca-cert-hash", "sha256:" + strings.Repeat("a", 64)}, "--token must look like"},
		{"join without CA pin", []string{"sh", installSh, "--join", "https://10.123.0.10:6443", "--token", "abcdef.0123456789abcdef"}, "--ca-cert-hash"},
		{"missing binary", []string{"sh", installSh, "--binary-dir", "/nonexistent"}, "no vcluster-standalone binary in /nonexistent"},
		{"join without node-agent", []string{"sh", installSh, "--binary-dir", "/nonexistent", "--join", "https://10.123.0.10:6443",
			"--token", "abcdef.0123456789abcdef", "--ca-cert-hash", "sha256:" + strings.Repeat("a", 64)}, "no node-agent binary in /nonexistent"},
		{"bad timeout", []string{"sh", installSh, "--timeout", "soon"}, "--timeout must be a number of seconds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oneLineError(t, c.name, inNode(t, cpNode, c.cmd...), c.want)
		})
	}
	// None of that may have disturbed the running control plane.
	waitReady(t, time.Minute)
}

// The files, units and processes an installed control plane has; uninstall
// must remove every one of them.
var installedPaths = []string{
	"/usr/local/bin/vcluster-standalone",
	"/usr/local/bin/vcluster-standalone-uninstall.sh",
	"/etc/vcluster-standalone",
	"/etc/vcluster-standalone/config.yaml",
	"/etc/vcluster-standalone/admin.kubeconfig",
	"/etc/vcluster-standalone/vcluster-standalone.env",
	"/etc/systemd/system/vcluster-standalone.service",
	"/etc/systemd/system/multi-user.target.wants/vcluster-standalone.service",
	"/var/lib/vcluster-standalone",
}

func TestUninstallLeavesNothing(t *testing.T) {
	track(t)
	for _, p := range installedPaths {
		if r := inNode(t, cpNode, "test", "-e", p); r.code != 0 {
			t.Errorf("before uninstall, %s is missing (the list of checked paths is stale?)", p)
		}
	}
	out := mustInNode(t, cpNode, "vcluster-standalone-uninstall.sh")
	t.Logf("uninstall:\n%s", out)
	for _, p := range installedPaths {
		if r := inNode(t, cpNode, "test", "-e", p); r.code == 0 {
			t.Errorf("after uninstall, %s still exists", p)
		}
	}
	// Anything else named after the distribution, anywhere on the node's disk,
	// except the lab's own disk mounted at node-agent's containerd root (and
	// the directories holding that mount point): the installer did not make it.
	left := mustInNode(t, cpNode, "sh", "-c",
		`find / -xdev \( -name '*vcluster-standalone*' -o -name '*node-agent*' \) -print 2>/dev/null |
		while read -r p; do findmnt -rn -o TARGET | grep -q "^$p\(/\|$\)" || echo "$p"; done`)
	if left != "" {
		t.Errorf("files left after uninstall:\n%s", left)
	}
	if r := inNode(t, cpNode, "systemctl", "cat", service+".service"); r.code == 0 {
		t.Errorf("systemd still knows %s.service after uninstall", service)
	}
	if procs := inNode(t, cpNode, "pgrep", "-f", "vcluster-standalone start"); procs.stdout != "" {
		t.Errorf("processes left after uninstall: %s", procs.stdout)
	}
	if listen := mustInNode(t, cpNode, "ss", "-Hltn", "sport = :6443"); listen != "" {
		t.Errorf("something still listens on :6443: %s", listen)
	}
}

func TestFreshInstallAfterUninstall(t *testing.T) {
	track(t)
	start := time.Now()
	out := mustInNode(t, cpNode, "sh", installSh, "--binary-dir", binDir, "--advertise-address", "10.123.0.10")
	t.Logf("fresh install.sh to ready: %s (%s)", time.Since(start).Round(100*time.Millisecond), lastLine(out))
	// A new cluster has a new CA: the host needs a new kubeconfig.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := run(ctx, labTool, "kubeconfig"); r.code != 0 || r.stdout != kubeconfig {
		t.Fatalf("lab kubeconfig: %s", r)
	}
	waitReady(t, 3*time.Minute)
	if r := inNode(t, cpNode, "vcluster-standalone", "kubectl", "get", "configmap", "e2e-rerun"); r.code == 0 {
		t.Errorf("ConfigMap from the uninstalled cluster is still there: uninstall kept the data")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "is ready") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}
