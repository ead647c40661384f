package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
)

// TestStorageControlPlane: the control plane writes the storage objects and
// CRDs, keeps nodes to their own CSI objects, and its CSI controller turns a
// CreateVolume into a Volume object that waits for the node's report; a PVC
// no node can hold gets an event naming the largest free space.
func TestStorageControlPlane(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	defer cp.stop()
	ctx := context.Background()
	client := cp.client()
	adminCfg, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	admin := dynamic.NewForConfigOrDie(adminCfg)

	// Objects written at start.
	extensions := apiextensionsclient.NewForConfigOrDie(adminCfg)
	for _, name := range []string{"volumes." + api.Group, "snapshots." + api.Group, "pools." + api.Group,
		"volumesnapshots.snapshot.storage.k8s.io", "volumesnapshotcontents.snapshot.storage.k8s.io", "volumesnapshotclasses.snapshot.storage.k8s.io"} {
		mustPoll(t, 30*time.Second, "CRD "+name+" established", func(ctx context.Context) error {
			crd, err := extensions.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("not established: %+v", crd.Status.Conditions)
		})
	}
	driver, err := client.StorageV1().CSIDrivers().Get(ctx, csi.DriverName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *driver.Spec.AttachRequired || !*driver.Spec.PodInfoOnMount || !*driver.Spec.StorageCapacity || string(*driver.Spec.FSGroupPolicy) != "File" || len(driver.Spec.VolumeLifecycleModes) != 2 {
		t.Errorf("CSIDriver spec %+v", driver.Spec)
	}
	class, err := client.StorageV1().StorageClasses().Get(ctx, "local", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if class.Provisioner != csi.DriverName || string(*class.VolumeBindingMode) != "WaitForFirstConsumer" || !*class.AllowVolumeExpansion ||
		class.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" || *class.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("StorageClass local: %+v", class)
	}
	snapshotClasses := admin.Resource(schemaGVR("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses"))
	if sc, err := snapshotClasses.Get(ctx, "local", metav1.GetOptions{}); err != nil {
		t.Errorf("VolumeSnapshotClass local: %v", err)
	} else if sc.Object["driver"] != csi.DriverName {
		t.Errorf("VolumeSnapshotClass driver %v", sc.Object["driver"])
	}
	socket := filepath.Join(cp.dataDir, "csi", "controller.sock")
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("controller socket %s: %v (mode %v)", socket, err, fi)
	}

	// Nodes touch only their own objects.
	nodeDyn := func(name string) dynamic.Interface {
		return dynamic.NewForConfigOrDie(certConfig(t, cp, "system:node:"+name, "system:nodes"))
	}
	n1, n2 := nodeDyn("n1"), nodeDyn("n2")
	pool := func(name string) *unstructured.Unstructured {
		u, err := api.ToUnstructured(&api.Pool{ObjectMeta: metav1.ObjectMeta{Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if _, err := n1.Resource(api.PoolResource).Create(ctx, pool("n2"), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "only the Pool named after itself") {
		t.Errorf("node n1 creating Pool n2: %v, want the policy's refusal", err)
	}
	if _, err := n1.Resource(api.PoolResource).Create(ctx, pool("n1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("node n1 creating its Pool: %v", err)
	}
	setPoolStatus := func(free int64) {
		patch := fmt.Sprintf(`{"status":{"backend":"btrfs","totalBytes":%d,"freeBytes":%d,"maxVolumeSizeBytes":%d}}`, 10<<30, free, free)
		if _, err := n1.Resource(api.PoolResource).Patch(ctx, "n1", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatalf("node n1 reporting its pool: %v", err)
		}
	}
	setPoolStatus(1 << 30)

	// CreateVolume waits for the node's report.
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctrl := csipb.NewControllerClient(conn)
	type result struct {
		resp *csipb.CreateVolumeResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		resp, err := ctrl.CreateVolume(cctx, &csipb.CreateVolumeRequest{
			Name: "pvc-integration", CapacityRange: &csipb.CapacityRange{RequiredBytes: 64 << 20},
			VolumeCapabilities: []*csipb.VolumeCapability{{
				AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
				AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
			}},
			AccessibilityRequirements: &csipb.TopologyRequirement{Preferred: []*csipb.Topology{{Segments: map[string]string{csi.TopologyKey: "n1"}}}},
		})
		done <- result{resp, err}
	}()
	var vol *api.Volume
	mustPoll(t, 30*time.Second, "Volume pvc-integration created", func(ctx context.Context) error {
		u, err := admin.Resource(api.VolumeResource).Get(ctx, "pvc-integration", metav1.GetOptions{})
		if err != nil {
			return err
		}
		vol, err = api.FromUnstructured[api.Volume](u)
		return err
	})
	if vol.Spec.Node != "n1" || vol.Spec.CapacityBytes != 64<<20 || vol.Spec.AccessType != api.AccessMount || len(vol.Finalizers) != 1 || vol.Finalizers[0] != csi.Finalizer {
		t.Fatalf("Volume: %+v", vol)
	}
	select {
	case r := <-done:
		t.Fatalf("CreateVolume returned before the node reported: %+v %v", r.resp, r.err)
	case <-time.After(time.Second):
	}
	readyPatch := []byte(fmt.Sprintf(`{"status":{"phase":"Ready","capacityBytes":%d,"observedGeneration":%d}}`, 64<<20, vol.Generation))
	if _, err := n2.Resource(api.VolumeResource).Patch(ctx, vol.Name, types.MergePatchType, readyPatch, metav1.PatchOptions{}, "status"); err == nil {
		t.Error("node n2 could report on a volume of node n1")
	}
	if _, err := n1.Resource(api.VolumeResource).Patch(ctx, vol.Name, types.MergePatchType, []byte(`{"spec":{"capacityBytes":1}}`), metav1.PatchOptions{}); err == nil {
		t.Error("node n1 could change its volume's spec")
	}
	if _, err := n1.Resource(api.VolumeResource).Patch(ctx, vol.Name, types.MergePatchType, readyPatch, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("node n1 reporting its volume: %v", err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("CreateVolume: %v", r.err)
		}
		if got := r.resp.GetVolume(); got.GetVolumeId() != vol.Name || got.GetCapacityBytes() != 64<<20 || got.GetAccessibleTopology()[0].GetSegments()[csi.TopologyKey] != "n1" {
			t.Errorf("CreateVolume response %+v", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("CreateVolume did not return after the node reported the volume ready")
	}

	// A Node n1 (no kubelet: the object is enough for capacity), then a
	// PVC larger than any pool.
	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{csi.TopologyKey: "n1"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, 45*time.Second, "CSIStorageCapacity of n1", func(ctx context.Context) error {
		list, err := client.StorageV1().CSIStorageCapacities("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "csi.vcluster-standalone.io/node=n1"})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 || list.Items[0].Capacity == nil || list.Items[0].Capacity.Value() != 1<<30 || list.Items[0].StorageClassName != "local" {
			return fmt.Errorf("got %+v", list.Items)
		}
		return nil
	})
	setPoolStatus(512 << 20)
	mustPoll(t, 45*time.Second, "CSIStorageCapacity follows the pool", func(ctx context.Context) error {
		list, err := client.StorageV1().CSIStorageCapacities("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "csi.vcluster-standalone.io/node=n1"})
		if err != nil || len(list.Items) != 1 || list.Items[0].Capacity.Value() != 512<<20 {
			return fmt.Errorf("%v %+v", err, list)
		}
		return nil
	})
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "too-big", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
		},
	}
	if _, err := client.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, 45*time.Second, "event on the PVC no node can hold", func(ctx context.Context) error {
		events, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=too-big"})
		if err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason == "NotEnoughStorage" && strings.Contains(e.Message, "largest free space is 512Mi on node n1") {
				return nil
			}
		}
		return fmt.Errorf("events: %+v", events.Items)
	})

	// The Node goes: deleting its volume does not hang.
	if err := client.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := ctrl.DeleteVolume(dctx, &csipb.DeleteVolumeRequest{VolumeId: vol.Name}); err != nil {
		t.Fatalf("DeleteVolume of a volume whose node is gone: %v", err)
	}
}

func schemaGVR(group, version, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
}
