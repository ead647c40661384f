//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vcluster-standalone/vcluster-standalone/test/internal/ginkgoout"
)

// The storage tests drive the built-in CSI driver as a user would, with
// kubectl: PVCs on the default class "local", pods of the imported busybox
// image on a private node, snapshots, clones, expansion, and csi-sanity
// against both CSI halves inside lab-cp.

const (
	controllerSocket = "/var/lib/vcluster-standalone/csi/controller.sock"
	nodeSocket       = "/var/lib/node-agent/kubelet/plugins/csi.vcluster-standalone.io/csi.sock"
)

// testStorageCSISanity runs csi-sanity (built from csi-test v5 by make e2e)
// in lab-cp against the controller socket and lab-cp's node socket, for
// mount and block volumes. The volume parameter pins test volumes to
// lab-cp, where the node half under test runs.
func testStorageCSISanity(t *testing.T) {
	track(t)
	mustInNode(t, cpNode, "sh", "-c", "printf 'csi.vcluster-standalone.io/node: "+cpNode+"\\n' > /tmp/csi-sanity-params.yaml")
	for _, accessType := range []string{"mount", "block"} {
		t.Run(accessType, func(t *testing.T) {
			// csi-sanity creates the target and staging dirs (not their parent)
			// and refuses existing ones.
			dir := "/tmp/csi-sanity-" + accessType
			mustInNode(t, cpNode, "sh", "-c", "rm -rf "+dir+" && mkdir -p "+dir)
			r := inNode(t, cpNode, binDir+"/csi-sanity",
				"--csi.endpoint=unix://"+nodeSocket,
				"--csi.controllerendpoint=unix://"+controllerSocket,
				"--csi.testvolumeaccesstype="+accessType,
				"--csi.testvolumeparameters=/tmp/csi-sanity-params.yaml",
				"--csi.testvolumesize=67108864", "--csi.testvolumeexpandsize=134217728",
				"--csi.mountdir="+dir+"/target", "--csi.stagingdir="+dir+"/staging",
				"--ginkgo.timeout=5m", "--ginkgo.no-color")
			summary := ginkgoout.Summary(r.stdout)
			t.Logf("csi-sanity %s: %s", accessType, summary)
			if r.code != 0 {
				t.Fatalf("csi-sanity %s failed: %s\n%s", accessType, summary, ginkgoout.Tail(r.stdout, 60))
			}
		})
	}
}

// applyYAML writes manifest to a file and applies it in ns.
func applyYAML(t *testing.T, ns, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	mustKubectl(t, "apply", "-n", ns, "-f", path)
}

func pvcYAML(name, size, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: %s}}
%s`, name, size, extra)
}

// storagePod is a busybox pod on node; containerExtra and volumes are YAML
// lines of the container (volumeMounts, volumeDevices) and the pod.
func storagePod(name, node, containerExtra, volumes string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: [sleep, "86400"]
%s  volumes:
%s`, name, node, busyboxImage, containerExtra, volumes)
}

// podWithClaim is a busybox pod on node mounting claim at /data.
func podWithClaim(name, node, claim string) string {
	return storagePod(name, node, "    volumeMounts: [{name: data, mountPath: /data}]\n",
		"  - {name: data, persistentVolumeClaim: {claimName: "+claim+"}}\n")
}

// inPod runs a shell command in the pod's container.
func inPod(t *testing.T, ns, pod, script string) result {
	t.Helper()
	return kubectl(t, "exec", "-n", ns, pod, "--", "sh", "-c", script)
}

func mustInPod(t *testing.T, ns, pod, script string) string {
	t.Helper()
	r := inPod(t, ns, pod, script)
	if r.code != 0 {
		t.Fatalf("in pod %s: %s: %s", pod, script, r)
	}
	return r.stdout
}

func waitPod(t *testing.T, ns, pod string, timeout time.Duration) time.Duration {
	t.Helper()
	return poll(t, timeout, 200*time.Millisecond, "pod "+pod+" running", func() (bool, string) {
		r := kubectl(t, "get", "pod", "-n", ns, pod, "-o", "jsonpath={.status.phase}")
		return r.stdout == "Running", r.String()
	})
}

// md5 of a file in a pod.
func md5In(t *testing.T, ns, pod, file string) string {
	t.Helper()
	return strings.Fields(mustInPod(t, ns, pod, "md5sum "+file))[0]
}

func poolFree(t *testing.T, node string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(mustKubectl(t, "get", "pools.csi.vcluster-standalone.io", node, "-o", "jsonpath={.status.freeBytes}"), 10, 64)
	if err != nil {
		t.Fatalf("pool %s free bytes: %v", node, err)
	}
	return n
}

func volumeOf(t *testing.T, ns, claim string) string {
	t.Helper()
	pv := mustKubectl(t, "get", "pvc", "-n", ns, claim, "-o", "jsonpath={.spec.volumeName}")
	return mustKubectl(t, "get", "pv", pv, "-o", "jsonpath={.spec.csi.volumeHandle}")
}

// testStorageVolumes walks the list on a private node: bound and
// written, size enforced, online expansion, snapshot restore, clone,
// survival of pod re-creation and node-agent restarts, space freed on
// delete, CSIStorageCapacity, an unplaceable PVC, ephemeral volumes and a
// block volume.
func testStorageVolumes(t *testing.T) {
	track(t)
	cs := clientset(t)
	importBusybox(t, podNode)
	ns := testNamespace(t, cs, "e2e-storage")

	// Bound, mounted, written.
	applyYAML(t, ns, pvcYAML("data", "64Mi", ""))
	applyYAML(t, ns, podWithClaim("writer", podNode, "data"))
	took := waitPod(t, ns, "writer", 2*time.Minute)
	t.Logf("PVC 64Mi -> pod Running on %s in %s", podNode, took.Round(10*time.Millisecond))
	if phase := mustKubectl(t, "get", "pvc", "-n", ns, "data", "-o", "jsonpath={.status.phase}"); phase != "Bound" {
		t.Fatalf("PVC data is %s, want Bound", phase)
	}
	mustInPod(t, ns, "writer", "dd if=/dev/urandom of=/data/a bs=1M count=8 2>/dev/null && sync")
	sum := md5In(t, ns, "writer", "/data/a")

	// Writing past the size fails in the pod, and leaves the volume usable.
	r := inPod(t, ns, "writer", "dd if=/dev/zero of=/data/big bs=1M count=100 conv=fsync")
	if r.code == 0 || !(strings.Contains(r.stderr, "quota") || strings.Contains(r.stderr, "No space")) {
		t.Fatalf("writing 100Mi into a 64Mi volume: %s, want EDQUOT or ENOSPC", r)
	}
	t.Logf("write past 64Mi: %s", strings.TrimSpace(strings.Split(r.stderr, "\n")[0]))
	mustInPod(t, ns, "writer", "rm -f /data/big && sync")

	// Online expansion: the running container can write more, no restart.
	cid := mustKubectl(t, "get", "pod", "-n", ns, "writer", "-o", "jsonpath={.status.containerStatuses[0].containerID}")
	begin := time.Now()
	mustKubectl(t, "patch", "pvc", "-n", ns, "data", "--type=merge", "-p", `{"spec":{"resources":{"requests":{"storage":"192Mi"}}}}`)
	poll(t, 2*time.Minute, 200*time.Millisecond, "PVC data at 192Mi", func() (bool, string) {
		r := kubectl(t, "get", "pvc", "-n", ns, "data", "-o", "jsonpath={.status.capacity.storage}")
		return r.stdout == "192Mi", r.String()
	})
	t.Logf("expansion 64Mi -> 192Mi visible in %s", time.Since(begin).Round(10*time.Millisecond))
	mustInPod(t, ns, "writer", "dd if=/dev/zero of=/data/big bs=1M count=100 conv=fsync 2>/dev/null && rm /data/big && sync")
	if got := mustKubectl(t, "get", "pod", "-n", ns, "writer", "-o", "jsonpath={.status.containerStatuses[0].containerID}"); got != cid {
		t.Errorf("container changed from %s to %s during expansion", cid, got)
	}

	// Snapshot, restore, clone: same bytes.
	applyYAML(t, ns, `apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap}
spec: {source: {persistentVolumeClaimName: data}}
`)
	begin = time.Now()
	poll(t, time.Minute, 200*time.Millisecond, "VolumeSnapshot ready", func() (bool, string) {
		r := kubectl(t, "get", "volumesnapshot", "-n", ns, "snap", "-o", "jsonpath={.status.readyToUse}")
		return r.stdout == "true", r.String()
	})
	t.Logf("VolumeSnapshot readyToUse in %s", time.Since(begin).Round(10*time.Millisecond))
	applyYAML(t, ns, pvcYAML("restored", "192Mi", "  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}\n"))
	applyYAML(t, ns, pvcYAML("clone", "192Mi", "  dataSource: {kind: PersistentVolumeClaim, name: data}\n"))
	applyYAML(t, ns, podWithClaim("restore-reader", podNode, "restored"))
	applyYAML(t, ns, podWithClaim("clone-reader", podNode, "clone"))
	waitPod(t, ns, "restore-reader", 2*time.Minute)
	waitPod(t, ns, "clone-reader", 2*time.Minute)
	if got := md5In(t, ns, "restore-reader", "/data/a"); got != sum {
		t.Errorf("restored from snapshot: md5 %s, want %s", got, sum)
	}
	if got := md5In(t, ns, "clone-reader", "/data/a"); got != sum {
		t.Errorf("clone: md5 %s, want %s", got, sum)
	}

	// Survives pod re-creation, a restart and a kill -9 of node-agent.
	mustKubectl(t, "delete", "pod", "-n", ns, "writer", "--wait=true")
	applyYAML(t, ns, podWithClaim("writer", podNode, "data"))
	waitPod(t, ns, "writer", 2*time.Minute)
	if got := md5In(t, ns, "writer", "/data/a"); got != sum {
		t.Fatalf("after pod re-creation: md5 %s, want %s", got, sum)
	}
	for _, how := range []string{"restart", "kill"} {
		since := time.Now()
		if how == "restart" {
			mustInNode(t, podNode, "systemctl", "restart", nodeAgentUnit)
		} else {
			mustInNode(t, podNode, "kill", "-9", agentPID(t, podNode))
		}
		waitNodeReady(t, cs, podNode, since, 90*time.Second)
		poll(t, time.Minute, 500*time.Millisecond, "volume readable after node-agent "+how, func() (bool, string) {
			r := inPod(t, ns, "writer", "md5sum /data/a && echo x > /data/after && sync")
			return r.code == 0 && strings.HasPrefix(r.stdout, sum), r.String()
		})
	}

	// Deleting PVCs frees their space and removes their subvolumes.
	restoredID, cloneID := volumeOf(t, ns, "restored"), volumeOf(t, ns, "clone")
	before := poolFree(t, podNode)
	mustKubectl(t, "delete", "pod", "-n", ns, "restore-reader", "clone-reader", "--wait=true")
	mustKubectl(t, "delete", "pvc", "-n", ns, "restored", "clone", "--wait=true")
	for _, id := range []string{restoredID, cloneID} {
		poll(t, time.Minute, 500*time.Millisecond, "Volume "+id+" gone", func() (bool, string) {
			r := kubectl(t, "get", "volumes.csi.vcluster-standalone.io", id)
			return r.code != 0 && strings.Contains(r.stderr, "NotFound"), r.String()
		})
		if r := inNode(t, podNode, "test", "-e", "/var/lib/node-agent/csi/volumes/"+id); r.code == 0 {
			t.Errorf("subvolume of %s still on %s", id, podNode)
		}
	}
	poll(t, time.Minute, time.Second, "pool free space grows after the deletes", func() (bool, string) {
		after := poolFree(t, podNode)
		return after > before, fmt.Sprintf("free %d before, %d now", before, after)
	})

	// CSIStorageCapacity follows the pool.
	poll(t, time.Minute, time.Second, "CSIStorageCapacity of "+podNode+" equals the pool's free space", func() (bool, string) {
		free := poolFree(t, podNode)
		r := kubectl(t, "get", "csistoragecapacities", "-n", "kube-system", "-l", "csi.vcluster-standalone.io/node="+podNode, "-o", "jsonpath={.items[0].capacity}")
		got, err := parseQuantityBytes(r.stdout)
		return err == nil && got == free, fmt.Sprintf("capacity %q, pool free %d", r.stdout, free)
	})

	// A PVC larger than every node stays Pending, with the event.
	applyYAML(t, ns, pvcYAML("huge", "100Ti", ""))
	applyYAML(t, ns, podWithClaim("huge-user", podNode, "huge"))
	poll(t, 90*time.Second, time.Second, "NotEnoughStorage event on PVC huge", func() (bool, string) {
		r := kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=huge,reason=NotEnoughStorage", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(r.stdout, "largest free space is"), r.String()
	})
	if phase := mustKubectl(t, "get", "pvc", "-n", ns, "huge", "-o", "jsonpath={.status.phase}"); phase != "Pending" {
		t.Errorf("PVC huge is %s, want Pending", phase)
	}
	t.Logf("too-big PVC: %s", mustKubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=huge,reason=NotEnoughStorage", "-o", "jsonpath={.items[0].message}"))

	// Ephemeral volumes get their size enforced.
	applyYAML(t, ns, storagePod("ephemeral", podNode,
		"    volumeMounts: [{name: generic, mountPath: /generic}, {name: inline, mountPath: /inline}]\n", `  - name: generic
    ephemeral:
      volumeClaimTemplate:
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 32Mi}}
  - name: inline
    csi:
      driver: csi.vcluster-standalone.io
      volumeAttributes: {size: 32Mi}
`))
	waitPod(t, ns, "ephemeral", 2*time.Minute)
	for _, dir := range []string{"/generic", "/inline"} {
		mustInPod(t, ns, "ephemeral", "dd if=/dev/zero of="+dir+"/small bs=1M count=8 conv=fsync 2>/dev/null")
		if r := inPod(t, ns, "ephemeral", "dd if=/dev/zero of="+dir+"/big bs=1M count=64 conv=fsync"); r.code == 0 {
			t.Errorf("64Mi into the 32Mi %s volume succeeded", dir)
		}
	}

	// A block-mode PVC: the pod sees a device and its bytes persist.
	applyYAML(t, ns, pvcYAML("raw", "32Mi", "  volumeMode: Block\n"))
	applyYAML(t, ns, storagePod("block", podNode, "    volumeDevices: [{name: raw, devicePath: /dev/xvda}]\n",
		"  - {name: raw, persistentVolumeClaim: {claimName: raw}}\n"))
	waitPod(t, ns, "block", 2*time.Minute)
	mustInPod(t, ns, "block", "echo block-bytes | dd of=/dev/xvda conv=fsync 2>/dev/null")
	if got := mustInPod(t, ns, "block", "dd if=/dev/xvda bs=11 count=1 2>/dev/null"); got != "block-bytes" {
		t.Errorf("block device read back %q, want block-bytes", got)
	}
	if size := mustInPod(t, ns, "block", "blockdev --getsize64 /dev/xvda"); size != strconv.Itoa(32<<20) {
		t.Errorf("block device size %s, want %d", size, 32<<20)
	}
}

// parseQuantityBytes reads a Kubernetes quantity printed by kubectl.
func parseQuantityBytes(s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	return q.Value(), nil
}
