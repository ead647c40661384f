//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// RuntimeDefault confines a pod's container with containerd's profile. On a
// kernel built without the x32 ABI, the profile runc compiles covers x86-64
// and i386 only (pkg/seccompabi: x32 rules allow nothing there and cost
// ~14 ms of CPU per container start); on a kernel with it, all three. The
// pod's sandbox (the static pause program) is confined to x86-64 alone.
// (In this file so that it runs before nodes_last_test.go uninstalls the
// private nodes.)
func TestRuntimeDefaultSeccomp(t *testing.T) {
	track(t)
	cs := clientset(t)
	importBusybox(t, podNode)
	ns := testNamespace(t, cs, "e2e-seccomp")
	pod := busyboxPod("confined", podNode, "sleep", "3600")
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	p := startPod(t, cs, ns, pod, 90*time.Second)

	status := mustKubectl(t, "exec", "-n", ns, "confined", "--", "grep", "^Seccomp:", "/proc/self/status")
	if strings.Join(strings.Fields(status), " ") != "Seccomp: 2" {
		t.Errorf("the container's seccomp mode: %q, want filter mode (Seccomp: 2)", status)
	}

	cid, _ := containerOf(p)
	cid = strings.TrimPrefix(cid, "containerd://")
	spec := mustInNode(t, podNode, "cat", "/run/node-agent/containerd/io.containerd.runtime.v2.task/k8s.io/"+cid+"/config.json")
	// The kernel's system call tables: x64_sys_call and x32_sys_call since
	// 6.9, sys_call_table and x32_sys_call_table before.
	if inNode(t, podNode, "grep", "-qE", " (x64_sys_call|sys_call_table)$", "/proc/kallsyms").code != 0 {
		t.Fatalf("%s: no x86-64 system call table in /proc/kallsyms: cannot tell whether the kernel has the x32 ABI", podNode)
	}
	kernelX32 := inNode(t, podNode, "grep", "-qE", " x32_sys_call(_table)?$", "/proc/kallsyms").code == 0
	for arch, want := range map[string]bool{"SCMP_ARCH_X86_64": true, "SCMP_ARCH_X86": true, "SCMP_ARCH_X32": kernelX32} {
		if got := strings.Contains(spec, `"`+arch+`"`); got != want {
			t.Errorf("the bundle's seccomp profile lists %s: %v, want %v (kernel has the x32 ABI: %v)", arch, got, want, kernelX32)
		}
	}

	sandbox := mustInNode(t, podNode, "sh", "-c", `cd /run/node-agent/containerd/io.containerd.runtime.v2.task/k8s.io && `+
		`for f in */config.json; do grep -q '"io.kubernetes.cri.container-type":"sandbox"' $f && `+
		`grep -q '"io.kubernetes.cri.sandbox-namespace":"`+ns+`"' $f && grep -o '"architectures":\[[^]]*\]' $f; done; true`)
	if sandbox != `"architectures":["SCMP_ARCH_X86_64"]` {
		t.Errorf("the pod sandbox's seccomp ABIs: %q, want x86-64 alone", sandbox)
	}
}
