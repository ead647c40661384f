package component

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// argsPart is a fake that runs from a command line.
type argsPart struct {
	*fake
	args []string
}

func (a *argsPart) Args() []string { return a.args }

func writeFile(path string, data []byte, mode os.FileMode) error {
	return os.WriteFile(path, data, mode)
}

func TestArgsRecorderLogsAndRecordsEveryCommandLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "effective-args.yaml")
	f := fakes(&journal{}, "etcd", "bootstrap objects", "kube-apiserver")
	parts := []Component{
		&argsPart{f[0], []string{"--data-dir=/d", "--client-cert-auth=true"}},
		f[1], // no command line: not listed
		&argsPart{f[2], []string{"--anonymous-auth=false"}},
	}
	var log bytes.Buffer
	rec := &ArgsRecorder{Components: parts, Path: path, Write: writeFile, Log: &log}
	if err := NewManager(time.Second, nil, append(parts, rec)...).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantLog := "Running etcd --data-dir=/d --client-cert-auth=true\nRunning kube-apiserver --anonymous-auth=false\n"
	if log.String() != wantLog {
		t.Errorf("log:\n%s\nwant:\n%s", log.String(), wantLog)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("args file: %v, mode %v; want 0600", err, fi)
	}
	args, err := ReadArgs(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{
		{"", "etcd --data-dir=/d --client-cert-auth=true\nkube-apiserver --anonymous-auth=false\n"},
		{"kube-apiserver", "kube-apiserver --anonymous-auth=false\n"},
	} {
		var out bytes.Buffer
		if err := args.Print(&out, tc.name); err != nil || out.String() != tc.want {
			t.Errorf("Print(%q) = %q, %v; want %q", tc.name, out.String(), err, tc.want)
		}
	}
	err = args.Print(&bytes.Buffer{}, "kubelet")
	if err == nil || err.Error() != `unknown component "kubelet": one of etcd, kube-apiserver` {
		t.Errorf("unknown component: %v", err)
	}
}

func TestReadArgsRefusesARecordOfAProcessThatIsGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	path := filepath.Join(t.TempDir(), "effective-args.yaml")
	data, err := RenderArgs(EffectiveArgs{PID: cmd.Process.Pid, Components: []ComponentArgs{{Name: "etcd"}}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, data, 0o600)
	if _, err := ReadArgs(path); err == nil || !strings.Contains(err.Error(), "is not running") {
		t.Errorf("stale record: %v", err)
	}
	if _, err := ReadArgs(path + ".missing"); err == nil || !strings.Contains(err.Error(), "has the service been started") {
		t.Errorf("missing record: %v", err)
	}
}

func TestPrintArgsFileChecksTheNameFirst(t *testing.T) {
	err := PrintArgsFile(&bytes.Buffer{}, "/nonexistent", "kubelt", []string{"kubelet", "kube-proxy"})
	if err == nil || err.Error() != `unknown component "kubelt": one of kubelet, kube-proxy` {
		t.Errorf("got %v", err)
	}
}

func TestFormatFlagsIsSorted(t *testing.T) {
	got := strings.Join(FormatFlags(map[string]string{"b": "2", "a": "x,y", "c": ""}), " ")
	if got != "--a=x,y --b=2 --c=" {
		t.Errorf("got %q", got)
	}
}
