package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
	csinode "github.com/vcluster-standalone/vcluster-standalone/pkg/csi/node"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/pool"
)

// TestCSINodeReconciler: the node's reconciler against a real API server and
// a real btrfs pool (an image file, loop-mounted): Volume and Snapshot
// objects of this node become subvolumes and report status, restores carry
// the bytes, limit raises apply, deletions remove the data and then the
// finalizer, other nodes' objects are left alone, and the Pool object tells
// the pool's size.
func TestCSINodeReconciler(t *testing.T) {
	p, cp := csiTestbed(t, 1<<30)
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client := dynamic.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var log bytes.Buffer
	go func() { csinode.Reconcile(ctx, client, "node-a", p, &log); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	create := func(obj runtime.Object) {
		t.Helper()
		u, err := api.ToUnstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		res := api.VolumeResource
		if _, ok := obj.(*api.Snapshot); ok {
			res = api.SnapshotResource
		}
		if _, err := client.Resource(res).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Finalizers: []string{csi.Finalizer}}
	}
	volume := func(name, node string, size int64, mutate ...func(*api.VolumeSpec)) *api.Volume {
		v := &api.Volume{ObjectMeta: meta(name), Spec: api.VolumeSpec{Node: node, CapacityBytes: size, AccessType: api.AccessMount}}
		for _, m := range mutate {
			m(&v.Spec)
		}
		return v
	}
	getVolume := func(name string) *api.Volume {
		u, err := client.Resource(api.VolumeResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		v, err := api.FromUnstructured[api.Volume](u)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitVolume := func(name string, phase api.VolumePhase) *api.Volume {
		t.Helper()
		var v *api.Volume
		mustPoll(t, 30*time.Second, "volume "+name+" "+string(phase), func(context.Context) error {
			if v = getVolume(name); v.Status.Phase != phase {
				return fmt.Errorf("status %+v", v.Status)
			}
			return nil
		})
		return v
	}

	create(volume("vol-1", "node-a", 64<<20))
	create(volume("vol-b", "node-a", 32<<20, func(s *api.VolumeSpec) { s.AccessType = api.AccessBlock }))
	create(volume("vol-other", "node-b", 64<<20))
	create(volume("vol-huge", "node-a", 1<<40))
	create(volume("vol-nosrc", "node-a", 64<<20, func(s *api.VolumeSpec) {
		s.Source = &api.VolumeSource{Kind: api.SourceSnapshot, Name: "missing"}
	}))
	v := waitVolume("vol-1", api.VolumeReady)
	if v.Status.CapacityBytes != 64<<20 || v.Status.ObservedGeneration != v.Generation {
		t.Fatalf("vol-1 status %+v", v.Status)
	}
	if b := waitVolume("vol-b", api.VolumeReady); b.Status.CapacityBytes != 32<<20 {
		t.Fatalf("vol-b status %+v", b.Status)
	}
	if h := waitVolume("vol-huge", api.VolumeFailed); h.Status.Reason != api.ReasonOutOfSpace {
		t.Fatalf("vol-huge status %+v, want reason %s", h.Status, api.ReasonOutOfSpace)
	}
	if n := waitVolume("vol-nosrc", api.VolumeFailed); n.Status.Reason != api.ReasonSourceNotFound {
		t.Fatalf("vol-nosrc status %+v, want reason %s", n.Status, api.ReasonSourceNotFound)
	}

	// Data in, snapshot, restore: the same bytes.
	pv, err := p.Volume("vol-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pv.Dir, "mark"), []byte("from vol-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	create(&api.Snapshot{ObjectMeta: meta("snap-1"), Spec: api.SnapshotSpec{Node: "node-a", SourceVolume: "vol-1"}})
	mustPoll(t, 30*time.Second, "snapshot ready", func(context.Context) error {
		u, err := client.Resource(api.SnapshotResource).Get(ctx, "snap-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s, err := api.FromUnstructured[api.Snapshot](u)
		if err != nil {
			return err
		}
		if !s.Status.ReadyToUse || s.Status.SizeBytes != 64<<20 || s.Status.CreationTime == "" {
			return fmt.Errorf("status %+v", s.Status)
		}
		return nil
	})
	create(volume("vol-r", "node-a", 128<<20, func(s *api.VolumeSpec) {
		s.Source = &api.VolumeSource{Kind: api.SourceSnapshot, Name: "snap-1"}
	}))
	waitVolume("vol-r", api.VolumeReady)
	rv, _ := p.Volume("vol-r")
	if got, _ := os.ReadFile(filepath.Join(rv.Dir, "mark")); string(got) != "from vol-1" {
		t.Fatalf("restored volume holds %q", got)
	}

	// A raised limit is applied and reported.
	u, _ := client.Resource(api.VolumeResource).Get(ctx, "vol-1", metav1.GetOptions{})
	unstructured.SetNestedField(u.Object, int64(96<<20), "spec", "capacityBytes")
	if _, err := client.Resource(api.VolumeResource).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, 30*time.Second, "vol-1 grown", func(context.Context) error {
		if v := getVolume("vol-1"); v.Status.CapacityBytes != 96<<20 || v.Status.ObservedGeneration != v.Generation {
			return fmt.Errorf("status %+v", v.Status)
		}
		return nil
	})
	if pv, _ := p.Volume("vol-1"); pv.CapacityBytes != 96<<20 {
		t.Fatalf("pool says %d after the raise", pv.CapacityBytes)
	}

	// The Pool object: this node's, with the pool's size and volume count.
	mustPoll(t, 30*time.Second, "Pool node-a", func(context.Context) error {
		u, err := client.Resource(api.PoolResource).Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			return err
		}
		pl, err := api.FromUnstructured[api.Pool](u)
		if err != nil {
			return err
		}
		if pl.Status.Backend != pool.BackendBtrfs || pl.Status.TotalBytes != 1<<30 || pl.Status.Volumes != 3 || pl.Status.FreeBytes <= 0 || pl.Status.FreeBytes > 1<<30-(64+32+128)<<20 {
			return fmt.Errorf("status %+v", pl.Status)
		}
		return nil
	})

	// Deleting removes the subvolume, then the finalizer (so the object goes).
	for _, name := range []string{"vol-1", "vol-r"} {
		if err := client.Resource(api.VolumeResource).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Resource(api.SnapshotResource).Delete(ctx, "snap-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		res  schema.GroupVersionResource
		name string
	}{{api.VolumeResource, "vol-1"}, {api.VolumeResource, "vol-r"}, {api.SnapshotResource, "snap-1"}} {
		mustPoll(t, 30*time.Second, g.name+" gone", func(context.Context) error {
			if _, err := client.Resource(g.res).Get(ctx, g.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %v", err)
			}
			return nil
		})
	}
	if _, err := p.Volume("vol-1"); err == nil {
		t.Fatal("vol-1's subvolume is still in the pool")
	}
	if _, err := p.Snapshot("snap-1"); err == nil {
		t.Fatal("snap-1 is still in the pool")
	}
	// Another node's volume: no status, no data here.
	if o := getVolume("vol-other"); o.Status.Phase != "" {
		t.Fatalf("node-a wrote the status of node-b's volume: %+v", o.Status)
	}
	if _, err := p.Volume("vol-other"); err == nil {
		t.Fatal("node-a made node-b's volume")
	}
	t.Logf("reconciler log:\n%s", log.String())
}

// csiTestbed is a real btrfs pool of size bytes (an image file in a temp
// dir, loop-mounted; reset at the end) and a started control plane with the
// CSI CRDs; it skips where that cannot be had.
func csiTestbed(t *testing.T, size int64) (pool.Pool, *controlPlane) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: the pool mounts a btrfs image on a loop device")
	}
	dir := t.TempDir()
	root, image := filepath.Join(dir, "csi"), filepath.Join(dir, "csi.img")
	p, err := pool.Open(pool.Options{Root: root, Image: image, ImageSize: size, Backend: pool.BackendBtrfs})
	if err != nil {
		t.Skip("no btrfs pool on this host: ", err)
	}
	t.Cleanup(func() {
		if err := pool.Reset(root, image); err != nil {
			t.Errorf("pool reset: %v", err)
		}
	})
	cp := newControlPlane(t, "--join-node=false")
	cp.start()
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	installCSICRDs(t, apiextensionsclient.NewForConfigOrDie(cfg))
	return p, cp
}

// installCSICRDs creates the Volume, Snapshot and Pool CRDs unless the
// control plane did, and waits until they are served.
func installCSICRDs(t *testing.T, cs apiextensionsclient.Interface) {
	t.Helper()
	crds, err := api.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		_, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(context.Background(), crd, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		mustPoll(t, 30*time.Second, "CRD "+crd.Name+" established", func(ctx context.Context) error {
			got, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range got.Status.Conditions {
				if c.Type == "Established" && c.Status == "True" {
					return nil
				}
			}
			return fmt.Errorf("not established")
		})
	}
}
