package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	storageutil "k8s.io/kubernetes/pkg/apis/storage/util"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
)

const (
	// capacityNamespace holds the CSIStorageCapacity objects.
	capacityNamespace = metav1.NamespaceSystem
	nodeLabel         = "csi.vcluster-standalone.io/node"
	classLabel        = "csi.vcluster-standalone.io/storage-class"
	// NodeGoneAnnotation marks a PV whose node was deleted.
	NodeGoneAnnotation = "csi.vcluster-standalone.io/node-gone"
	// pendingEventEvery limits how often one PVC hears that no node can hold it.
	pendingEventEvery = time.Minute
)

// clusterSync keeps the cluster in line with the Pools and Nodes:
// CSIStorageCapacity per node and class, events on PVCs no node can hold,
// and the garbage collection of volumes whose Node is gone.
type clusterSync struct {
	client     kubernetes.Interface
	store      *store
	nodes      corelisters.NodeLister
	claims     corelisters.PersistentVolumeClaimLister
	pvs        corelisters.PersistentVolumeLister
	classes    storagelisters.StorageClassLister
	capacities storagelisters.CSIStorageCapacityLister
	recorder   record.EventRecorder

	mu          sync.Mutex
	lastPending map[types.UID]time.Time
}

func (c *clusterSync) sync(ctx context.Context) error {
	pools, err := c.store.pools.List(ctx)
	if err != nil {
		return fmt.Errorf("list Pools: %w", err)
	}
	classes, err := c.ourClasses()
	if err != nil {
		return err
	}
	return errors.Join(c.syncCapacities(ctx, pools, classes), c.reportUnplaceable(pools, classes), c.collectGone(ctx, pools))
}

func (c *clusterSync) ourClasses() ([]*storagev1.StorageClass, error) {
	all, err := c.classes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(sc *storagev1.StorageClass) bool { return sc.Provisioner != csi.DriverName }), nil
}

// capacityName names the CSIStorageCapacity of one node and class.
func capacityName(class, node string) string { return objectID("csisc", "vcs-"+class+"-"+node) }

func (c *clusterSync) syncCapacities(ctx context.Context, pools []*api.Pool, classes []*storagev1.StorageClass) error {
	api := c.client.StorageV1().CSIStorageCapacities(capacityNamespace)
	want := map[string]bool{}
	var errs []error
	for _, pool := range pools {
		if _, err := c.nodes.Get(pool.Name); err != nil {
			continue // the GC removes the pool of a deleted node
		}
		for _, sc := range classes {
			name := capacityName(sc.Name, pool.Name)
			want[name] = true
			obj := &storagev1.CSIStorageCapacity{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: capacityNamespace,
					Labels: map[string]string{nodeLabel: pool.Name, classLabel: sc.Name, "app.kubernetes.io/managed-by": "vcluster-standalone"}},
				NodeTopology:     &metav1.LabelSelector{MatchLabels: map[string]string{csi.TopologyKey: pool.Name}},
				StorageClassName: sc.Name,
				Capacity:         resource.NewQuantity(pool.Status.FreeBytes, resource.BinarySI),
			}
			if pool.Status.MaxVolumeSizeBytes > 0 {
				obj.MaximumVolumeSize = resource.NewQuantity(pool.Status.MaxVolumeSizeBytes, resource.BinarySI)
			}
			got, err := c.capacities.CSIStorageCapacities(capacityNamespace).Get(name)
			switch {
			case apierrors.IsNotFound(err):
				_, err = api.Create(ctx, obj, metav1.CreateOptions{})
			case err == nil && (!quantityEqual(got.Capacity, obj.Capacity) || !quantityEqual(got.MaximumVolumeSize, obj.MaximumVolumeSize)):
				updated := got.DeepCopy()
				updated.Capacity, updated.MaximumVolumeSize = obj.Capacity, obj.MaximumVolumeSize
				_, err = api.Update(ctx, updated, metav1.UpdateOptions{})
			}
			if err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("CSIStorageCapacity %s: %w", name, err))
			}
		}
	}
	existing, err := c.capacities.CSIStorageCapacities(capacityNamespace).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, obj := range existing {
		if obj.Labels[nodeLabel] != "" && !want[obj.Name] {
			if err := api.Delete(ctx, obj.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func quantityEqual(a, b *resource.Quantity) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Cmp(*b) == 0
}

// largestFree is the most any one node can hold now, and that node.
func largestFree(pools []*api.Pool, nodes corelisters.NodeLister) (int64, string) {
	var best int64
	var node string
	for _, p := range pools {
		if _, err := nodes.Get(p.Name); err != nil {
			continue
		}
		free := p.Status.FreeBytes
		if p.Status.MaxVolumeSizeBytes > 0 && p.Status.MaxVolumeSizeBytes < free {
			free = p.Status.MaxVolumeSizeBytes
		}
		if free > best || node == "" {
			best, node = free, p.Name
		}
	}
	return best, node
}

// reportUnplaceable gives every pending PVC of our classes that no node can
// hold an event naming the largest free space; the scheduler's own message
// only says that nodes lack storage.
func (c *clusterSync) reportUnplaceable(pools []*api.Pool, classes []*storagev1.StorageClass) error {
	ours := map[string]bool{}
	defaultClass := ""
	for _, sc := range classes {
		ours[sc.Name] = true
		if sc.Annotations[storageutil.IsDefaultStorageClassAnnotation] == "true" {
			defaultClass = sc.Name
		}
	}
	claims, err := c.claims.List(labels.Everything())
	if err != nil {
		return err
	}
	largest, node := largestFree(pools, c.nodes)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastPending == nil {
		c.lastPending = map[types.UID]time.Time{}
	}
	seen := map[types.UID]bool{}
	for _, claim := range claims {
		class := defaultClass
		if claim.Spec.StorageClassName != nil {
			class = *claim.Spec.StorageClassName
		}
		if claim.Status.Phase != corev1.ClaimPending || claim.Spec.VolumeName != "" || !ours[class] {
			continue
		}
		want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
		if want.Value() <= largest {
			continue
		}
		seen[claim.UID] = true
		if time.Since(c.lastPending[claim.UID]) < pendingEventEvery {
			continue
		}
		c.lastPending[claim.UID] = time.Now()
		msg := fmt.Sprintf("no node can hold %s: the largest free space is %s", want.String(), resource.NewQuantity(largest, resource.BinarySI).String())
		if node != "" {
			msg += " on node " + node
		} else {
			msg = fmt.Sprintf("no node can hold %s: no node has a storage pool yet", want.String())
		}
		c.recorder.Event(claim, corev1.EventTypeWarning, "NotEnoughStorage", msg)
	}
	for uid := range c.lastPending {
		if !seen[uid] {
			delete(c.lastPending, uid)
		}
	}
	return nil
}

// nodeGone reports whether the Node called name was deleted.
func (c *clusterSync) nodeGone(name string) bool {
	_, err := c.nodes.Get(name)
	return apierrors.IsNotFound(err)
}

// collectGone releases what a deleted Node held: Volumes and Snapshots being
// deleted lose their finalizer (no node will ever remove it), the PVs of the
// others are marked with an event, and the node's Pool goes.
func (c *clusterSync) collectGone(ctx context.Context, pools []*api.Pool) error {
	var errs []error
	for _, p := range pools {
		if c.nodeGone(p.Name) {
			klog.InfoS("Deleting the Pool of a deleted node", "node", p.Name)
			errs = append(errs, c.store.pools.Delete(ctx, p.Name))
		}
	}
	vols, err := c.store.volumes.List(ctx)
	if err != nil {
		return err
	}
	var pvsByHandle map[string]*corev1.PersistentVolume
	for _, v := range vols {
		if !c.nodeGone(v.Spec.Node) {
			continue
		}
		if v.DeletionTimestamp != nil {
			klog.InfoS("Releasing a deleted volume whose node is gone", "volume", v.Name, "node", v.Spec.Node)
			errs = append(errs, c.store.volumes.RemoveFinalizers(ctx, v.Name))
			continue
		}
		if pvsByHandle == nil {
			pvsByHandle = c.pvsByHandle()
		}
		if pv := pvsByHandle[v.Name]; pv != nil && pv.Annotations[NodeGoneAnnotation] == "" {
			errs = append(errs, c.markNodeGone(ctx, pv, v.Spec.Node))
		}
	}
	snaps, err := c.store.snapshots.List(ctx)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.DeletionTimestamp != nil && c.nodeGone(s.Spec.Node) {
			errs = append(errs, c.store.snapshots.RemoveFinalizers(ctx, s.Name))
		}
	}
	return errors.Join(errs...)
}

func (c *clusterSync) pvsByHandle() map[string]*corev1.PersistentVolume {
	out := map[string]*corev1.PersistentVolume{}
	pvs, _ := c.pvs.List(labels.Everything())
	for _, pv := range pvs {
		if pv.Spec.CSI != nil && pv.Spec.CSI.Driver == csi.DriverName {
			out[pv.Spec.CSI.VolumeHandle] = pv
		}
	}
	return out
}

func (c *clusterSync) markNodeGone(ctx context.Context, pv *corev1.PersistentVolume, node string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, NodeGoneAnnotation, node)
	if _, err := c.client.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("mark PV %s: %w", pv.Name, err)
	}
	msg := fmt.Sprintf("node %s, which held this volume, was deleted: its data is gone; delete the claim to release it", node)
	c.recorder.Event(pv, corev1.EventTypeWarning, "VolumeNodeGone", msg)
	if ref := pv.Spec.ClaimRef; ref != nil {
		if claim, err := c.claims.PersistentVolumeClaims(ref.Namespace).Get(ref.Name); err == nil {
			c.recorder.Event(claim, corev1.EventTypeWarning, "VolumeNodeGone", msg)
		}
	}
	return nil
}
