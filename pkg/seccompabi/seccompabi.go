// Package seccompabi keeps runc from compiling seccomp rules for a system
// call ABI the kernel cannot run. containerd's RuntimeDefault profile lists
// three x86 ABIs (x86-64, i386 and x32); runc's libseccomp compiles every
// rule for each, ~12 ms of CPU per ABI and container on these machines, in
// every container's start (measured on a lab node: 55 ms per runc run with
// all three, 41 ms without x32, 29 ms with x86-64 alone). Most kernels are
// built without the x32 ABI (CONFIG_X86_X32_ABI), where no x32 program can
// even be executed, so its rules allow nothing.
//
// node-agent probes the kernel once (ProbeX32, in a child process, since a
// seccomp filter above node-agent may kill the probing thread) and, when x32
// is unusable, sets EnvDropX32 for containerd, whose shims inherit it; the
// shim then removes x32 from a bundle's profile before runc reads it
// (Trim). A kernel that runs x32 programs keeps x32 in the profile. A pod's
// sandbox, which runs only node-agent's static pause program, keeps the
// native ABI alone, with or without x32 on the kernel.
//
// The one visible difference: an x86-64 program that issues an x32-numbered
// system call under such a profile is killed (SIGSYS, foreign ABI) instead
// of getting ENOSYS.
package seccompabi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// EnvDropX32 set to "1" in the shim's environment makes DropX32Enabled true.
const EnvDropX32 = "VCS_SECCOMP_DROP_X32"

// ProbeArg, as a binary's only argument, makes it run ProbeMain.
const ProbeArg = "-probe-x32-abi"

const archX32 = "SCMP_ARCH_X32"

// x32 system calls are the x86-64 ones with bit 30 set; 39 is getpid.
const x32Getpid = 0x40000000 | 39

// Exit codes of ProbeMain.
const (
	probeUsable   = 0
	probeUnusable = 3
)

// ProbeMain makes one x32 system call and returns the exit code that tells
// ProbeX32 whether the kernel ran it. Call it only in a process of its own:
// under a filter without x32 the kernel kills the calling thread.
func ProbeMain() int {
	if _, _, errno := syscall.RawSyscall(x32Getpid, 0, 0, 0); errno != 0 {
		return probeUnusable
	}
	return probeUsable
}

// ProbeX32 runs `bin ProbeArg` and reports whether x32 system calls work
// for processes started from here: false when the kernel lacks the ABI
// (ENOSYS) or a seccomp filter above us kills the call (SIGSYS), both of
// which hold for every container too.
func ProbeX32(bin string) (usable bool, err error) {
	err = exec.Command(bin, ProbeArg).Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGSYS {
			return false, nil
		}
		if exit.ExitCode() == probeUnusable {
			return false, nil
		}
	}
	return false, fmt.Errorf("x32 ABI probe %s: %w", bin, err)
}

// DropX32Enabled reports whether node-agent found x32 unusable.
func DropX32Enabled() bool { return os.Getenv(EnvDropX32) == "1" }

// nativeArch is the seccomp name of the ABI this binary (and node-agent's
// pause image, built with it) uses; "" where no trim for sandboxes is known.
var nativeArch = map[string]string{"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}[runtime.GOARCH]

// containerTypeSandbox marks the pause container containerd's CRI creates
// for each pod; node-agent's pause image is a static native program.
const (
	containerTypeKey     = "io.kubernetes.cri.container-type"
	containerTypeSandbox = "sandbox"
)

// Trim narrows the ABIs of the seccomp profile in bundle's config.json,
// leaving everything else as it was: x32 goes when dropX32, and a pod's
// sandbox keeps only the native ABI (its pause program makes no other
// system call, so the other rules are compile time spent for nothing). It
// reports whether the file changed; a spec without seccomp is not rewritten.
func Trim(bundle string, dropX32 bool) (bool, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	if !bytes.Contains(data, []byte(`"architectures"`)) {
		return false, nil
	}
	// Only the fields needed: a struct skips the rest of the spec without
	// building it (a shim's small heap is rarely collected; decoding whole
	// specs left ~1 MiB more resident per shim).
	var spec struct {
		Annotations map[string]string `json:"annotations"`
		Linux       struct {
			Seccomp struct {
				Architectures []string `json:"architectures"`
			} `json:"seccomp"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	arches := spec.Linux.Seccomp.Architectures
	nativeOnly := nativeArch != "" && spec.Annotations[containerTypeKey] == containerTypeSandbox && slices.Contains(arches, nativeArch)
	kept := make([]string, 0, len(arches))
	for _, a := range arches {
		if (dropX32 && a == archX32) || (nativeOnly && a != nativeArch) {
			continue
		}
		kept = append(kept, a)
	}
	if len(kept) == len(arches) {
		return false, nil
	}
	out, err := replaceArchitectures(data, arches, kept)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if err := fsutil.WriteFileAtomic(path, out, info.Mode().Perm()); err != nil {
		return false, err
	}
	return true, nil
}

// replaceArchitectures returns data with kept in place of the seccomp
// profile's architectures. containerd writes specs compactly, so the array
// is found as written and replaced in place; any other layout is decoded
// and encoded whole, numbers kept as written so that fields this package
// does not know (and 64-bit limits) come back unchanged.
func replaceArchitectures(data []byte, arches, kept []string) ([]byte, error) {
	const key = `"architectures":`
	was, _ := json.Marshal(arches)
	now, _ := json.Marshal(kept)
	if old := append([]byte(key), was...); bytes.Count(data, old) == 1 {
		return bytes.Replace(data, old, append([]byte(key), now...), 1), nil
	}
	var spec map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&spec); err != nil {
		return nil, err
	}
	linux, _ := spec["linux"].(map[string]any)
	seccomp, _ := linux["seccomp"].(map[string]any)
	seccomp["architectures"] = kept
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(spec); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
