package seccompabi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// The test binary doubles as the probe, as the shim does.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == ProbeArg {
		os.Exit(ProbeMain())
	}
	os.Exit(m.Run())
}

// A bundle spec as containerd writes it for RuntimeDefault, trimmed, with
// the kinds of values a rewrite could damage: a 64-bit limit, an HTML
// character, fields this package knows nothing about.
const bundleSpec = `{"ociVersion":"1.2.1","process":{"args":["/bin/sh","-c","echo <ok> && true"],
"rlimits":[{"type":"RLIMIT_NOFILE","hard":18446744073709551615,"soft":1048576}]},
"annotations":{"io.kubernetes.cri.sandbox-id":"abc"},
"linux":{"resources":{"memory":{"limit":9223372036854771712}},
"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
"architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]}]},
"futureField":{"x":[1,2.5,null,true]}}}`

func writeBundle(t *testing.T, spec string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func decode(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return doc
}

func TestTrimRemovesOnlyX32(t *testing.T) {
	// containerd's compact spec (edited in place), and an indented one
	// (decoded and encoded whole).
	var indented bytes.Buffer
	if err := json.Indent(&indented, []byte(bundleSpec), "", "  "); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]string{"compact": bundleSpec, "indented": indented.String()} {
		t.Run(name, func(t *testing.T) { testTrimRemovesOnlyX32(t, spec) })
	}
}

func testTrimRemovesOnlyX32(t *testing.T, spec string) {
	dir, path := writeBundle(t, spec)
	changed, err := Trim(dir, true)
	if err != nil || !changed {
		t.Fatalf("Trim = %v, %v; want true, nil", changed, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, data)
	arches := got["linux"].(map[string]any)["seccomp"].(map[string]any)["architectures"]
	if want := []any{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"}; !reflect.DeepEqual(arches, want) {
		t.Fatalf("architectures = %v, want %v", arches, want)
	}
	// Everything else is exactly what containerd wrote.
	want := decode(t, []byte(spec))
	want["linux"].(map[string]any)["seccomp"].(map[string]any)["architectures"] = arches
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("spec changed beyond the architectures:\ngot  %s\nwant %s", data, spec)
	}
	// containerd's own layout is edited in place: byte for byte the same
	// but for the one array element.
	if spec == bundleSpec && string(data) != strings.Replace(spec, `,"SCMP_ARCH_X32"`, "", 1) {
		t.Errorf("compact spec not edited in place:\n%s", data)
	}
	for _, s := range []string{"18446744073709551615", "9223372036854771712", "<ok>"} {
		if !strings.Contains(string(data), s) {
			t.Errorf("rewritten spec lost %q: %s", s, data)
		}
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("mode after rewrite: %v, %v; want 0600", info.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("bundle holds %d files after the rewrite, want config.json only", len(entries))
	}
	// A second pass finds nothing to do.
	if changed, err := Trim(dir, true); err != nil || changed {
		t.Fatalf("second Trim = %v, %v; want false, nil", changed, err)
	}
}

func TestTrimLeavesOtherSpecsAlone(t *testing.T) {
	for name, spec := range map[string]string{
		"no seccomp":         `{"ociVersion":"1.2.1","linux":{"namespaces":[{"type":"pid"}]}}`,
		"native only":        `{"linux":{"seccomp":{"architectures":["SCMP_ARCH_X86_64"],"syscalls":[]}}}`,
		"x32 only elsewhere": `{"annotations":{"note":"SCMP_ARCH_X32"},"linux":{"seccomp":{"architectures":["SCMP_ARCH_X86_64"]}}}`,
		// A sandbox whose profile lacks this machine's ABI is not ours to narrow.
		"foreign sandbox": `{"annotations":{"io.kubernetes.cri.container-type":"sandbox"},"linux":{"seccomp":{"architectures":["SCMP_ARCH_S390X"]}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir, path := writeBundle(t, spec)
			if changed, err := Trim(dir, true); err != nil || changed {
				t.Fatalf("Trim = %v, %v; want false, nil", changed, err)
			}
			if data, _ := os.ReadFile(path); string(data) != spec {
				t.Fatalf("spec rewritten: %s", data)
			}
		})
	}
}

// A pod's sandbox runs only the static pause program: the native ABI alone,
// whatever the kernel; an application container keeps i386 (and x32 unless
// dropped).
func TestTrimSandboxKeepsNativeABIOnly(t *testing.T) {
	if nativeArch == "" {
		t.Skipf("no native seccomp ABI known for %s", runtime.GOARCH)
	}
	all := `["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32","SCMP_ARCH_AARCH64","SCMP_ARCH_ARM"]`
	spec := func(kind string) string {
		return `{"annotations":{"io.kubernetes.cri.container-type":"` + kind + `"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","architectures":` + all + `}}}`
	}
	for _, c := range []struct {
		kind    string
		dropX32 bool
		want    []any
	}{
		{"sandbox", false, []any{nativeArch}},
		{"sandbox", true, []any{nativeArch}},
		{"container", false, nil},
		{"container", true, []any{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}},
	} {
		dir, path := writeBundle(t, spec(c.kind))
		changed, err := Trim(dir, c.dropX32)
		if err != nil || changed != (c.want != nil) {
			t.Fatalf("%s, dropX32 %v: Trim = %v, %v; want changed %v", c.kind, c.dropX32, changed, err, c.want != nil)
		}
		data, _ := os.ReadFile(path)
		got := decode(t, data)
		if c.want == nil {
			if string(data) != spec(c.kind) {
				t.Errorf("%s, dropX32 %v: rewritten to %s", c.kind, c.dropX32, data)
			}
			continue
		}
		if arches := got["linux"].(map[string]any)["seccomp"].(map[string]any)["architectures"]; !reflect.DeepEqual(arches, c.want) {
			t.Errorf("%s, dropX32 %v: architectures %v, want %v", c.kind, c.dropX32, arches, c.want)
		}
	}
}

func TestTrimBadSpecIsAnErrorAndUntouched(t *testing.T) {
	spec := `{"linux":{"seccomp":{"architectures":["SCMP_ARCH_X32"`
	dir, path := writeBundle(t, spec)
	if _, err := Trim(dir, true); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Trim of a truncated spec: %v; want an error naming %s", err, path)
	}
	if data, _ := os.ReadFile(path); string(data) != spec {
		t.Fatalf("truncated spec rewritten: %s", data)
	}
	if _, err := Trim(t.TempDir(), true); !os.IsNotExist(err) {
		t.Fatalf("Trim of a bundle without config.json: %v; want not-exist", err)
	}
}

// The probe's verdict matches the kernel's symbol table: a kernel built
// with the x32 ABI has its system call table.
func TestProbeX32MatchesKernel(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	usable, err := ProbeX32(self)
	if err != nil {
		t.Fatal(err)
	}
	if filtered(t) {
		t.Logf("this test runs under a seccomp filter; probe says usable=%v", usable)
		if usable && !kernelHasX32(t) {
			t.Fatal("probe says x32 works on a kernel without its system call table")
		}
		return
	}
	if want := kernelHasX32(t); usable != want {
		t.Fatalf("ProbeX32 = %v; the kernel's symbols say x32 ABI present = %v", usable, want)
	}
}

func TestProbeX32ReadsTheChildsEnd(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		body    string
		usable  bool
		wantErr bool
	}{
		{"exit 0", true, false},
		{"exit 3", false, false},
		{"kill -SYS $$", false, false}, // a filter above us killed the call
		{"exit 7", false, true},
	} {
		usable, err := ProbeX32(script(strings.Fields(c.body)[1], c.body))
		if usable != c.usable || (err != nil) != c.wantErr {
			t.Errorf("child %q: ProbeX32 = %v, %v; want %v, error %v", c.body, usable, err, c.usable, c.wantErr)
		}
	}
	if _, err := ProbeX32(filepath.Join(dir, "missing")); err == nil {
		t.Error("ProbeX32 of a missing binary: no error")
	}
}

func filtered(t *testing.T) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	return !strings.Contains(string(data), "Seccomp:\t0\n")
}

func kernelHasX32(t *testing.T) bool {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Skipf("no kernel symbols: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// x32_sys_call (6.9+) or x32_sys_call_table (before).
		if f := strings.Fields(sc.Text()); len(f) >= 3 && strings.HasPrefix(f[2], "x32_sys_call") {
			return true
		}
	}
	return false
}
