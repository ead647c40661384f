package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/pool"
)

// poolInterval is how often the Pool object is refreshed without changes.
const poolInterval = 30 * time.Second

// reconciler makes this node's pool follow the Volume and Snapshot objects
// whose spec.node is this node, reports their status, and keeps the Pool
// object of this node current.
type reconciler struct {
	client   dynamic.Interface
	nodeName string
	pool     pool.Pool
	lock     func() func() // the server's volume lock
	log      io.Writer

	queue     workqueue.TypedRateLimitingInterface[key]
	volumes   cache.GenericLister
	snapshots cache.GenericLister
	poke      chan struct{}
}

type key struct {
	snapshot bool
	name     string
}

func newReconciler(client dynamic.Interface, nodeName string, p pool.Pool, lock func() func(), log io.Writer) *reconciler {
	return &reconciler{
		client: client, nodeName: nodeName, pool: p, lock: lock, log: log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[key](),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "csi-node"}),
		poke: make(chan struct{}, 1),
	}
}

// poolChanged asks for a Pool refresh soon.
func (r *reconciler) poolChanged() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// run watches and reconciles until ctx ends.
func (r *reconciler) run(ctx context.Context) {
	selector := r.fieldSelector(ctx)
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(r.client, 10*time.Minute, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.FieldSelector = selector })
	for _, kind := range []struct {
		snapshot bool
		informer cache.SharedIndexInformer
	}{
		{false, factory.ForResource(api.VolumeResource).Informer()},
		{true, factory.ForResource(api.SnapshotResource).Informer()},
	} {
		enqueue := func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				r.queue.Add(key{kind.snapshot, u.GetName()})
			} else if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				r.queue.Add(key{kind.snapshot, d.Key})
			}
		}
		_, _ = kind.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
		})
	}
	r.volumes = factory.ForResource(api.VolumeResource).Lister()
	r.snapshots = factory.ForResource(api.SnapshotResource).Lister()
	factory.Start(ctx.Done())
	go r.publishPool(ctx)
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	factory.WaitForCacheSync(ctx.Done())
	for r.next(ctx) {
	}
	factory.Shutdown()
}

// fieldSelector selects this node's objects when the CRDs declare spec.node
// selectable; otherwise every object is watched and the others are skipped.
// It asks until the API server answers (the CRDs or the node's rights may
// not be there yet while the control plane starts).
func (r *reconciler) fieldSelector(ctx context.Context) string {
	selector := "spec.node=" + r.nodeName
	logged := false
	for {
		_, err := r.client.Resource(api.VolumeResource).List(ctx, metav1.ListOptions{FieldSelector: selector, Limit: 1})
		switch {
		case err == nil:
			return selector
		case apierrors.IsBadRequest(err):
			fmt.Fprintf(r.log, "csi: the Volume CRD has no selectable spec.node; watching all volumes\n")
			return ""
		case !logged:
			fmt.Fprintf(r.log, "csi: waiting for the Volume API: %v\n", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return selector
		case <-time.After(2 * time.Second):
		}
	}
}

func (r *reconciler) next(ctx context.Context) bool {
	k, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(k)
	var err error
	if k.snapshot {
		err = r.syncSnapshot(ctx, k.name)
	} else {
		err = r.syncVolume(ctx, k.name)
	}
	if err != nil {
		fmt.Fprintf(r.log, "csi: %s %s: %v (retrying)\n", kindName(k), k.name, err)
		r.queue.AddRateLimited(k)
		return true
	}
	r.queue.Forget(k)
	return true
}

func kindName(k key) string {
	if k.snapshot {
		return "snapshot"
	}
	return "volume"
}

func (r *reconciler) syncVolume(ctx context.Context, name string) error {
	obj, err := r.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone: it had no finalizer of ours, so it held no data here
	}
	if err != nil {
		return err
	}
	v, err := api.FromUnstructured[api.Volume](obj.(*unstructured.Unstructured))
	if err != nil {
		return err
	}
	if v.Spec.Node != r.nodeName {
		return nil
	}
	unlock := r.lock()
	defer unlock()
	if v.DeletionTimestamp != nil {
		if !slices.Contains(v.Finalizers, csi.Finalizer) {
			return nil
		}
		if err := r.pool.DeleteVolume(v.Name); err != nil {
			return err
		}
		r.poolChanged()
		return r.removeFinalizer(ctx, api.VolumeResource, v.Name, v.Finalizers)
	}
	if !slices.Contains(v.Finalizers, csi.Finalizer) {
		return nil // the controller adds it at create; without it, a delete would leave data behind
	}
	req := pool.VolumeRequest{CapacityBytes: v.Spec.CapacityBytes, Block: v.Spec.AccessType == api.AccessBlock}
	if src := v.Spec.Source; src != nil {
		req.Source = &pool.Source{Snapshot: src.Kind == api.SourceSnapshot, ID: src.Name}
	}
	st := v.Status
	st.ObservedGeneration = v.Generation
	pv, err := r.pool.CreateVolume(v.Name, req)
	switch {
	case errors.Is(err, pool.ErrOutOfSpace):
		st.Phase, st.Reason, st.Message = api.VolumeFailed, api.ReasonOutOfSpace, err.Error()
	case errors.Is(err, pool.ErrNotFound):
		st.Phase, st.Reason, st.Message = api.VolumeFailed, api.ReasonSourceNotFound, err.Error()
	case err != nil:
		st.Phase, st.Reason, st.Message = api.VolumeFailed, "Error", err.Error()
	default:
		st.Phase, st.Reason, st.Message = api.VolumeReady, "", ""
		st.CapacityBytes, st.UsedBytes = pv.CapacityBytes, pv.UsedBytes
		r.poolChanged()
	}
	if reflect.DeepEqual(st, v.Status) {
		return nil
	}
	v.Status = st
	return r.updateStatus(ctx, api.VolumeResource, v)
}

func (r *reconciler) syncSnapshot(ctx context.Context, name string) error {
	obj, err := r.snapshots.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	s, err := api.FromUnstructured[api.Snapshot](obj.(*unstructured.Unstructured))
	if err != nil {
		return err
	}
	if s.Spec.Node != r.nodeName {
		return nil
	}
	unlock := r.lock()
	defer unlock()
	if s.DeletionTimestamp != nil {
		if !slices.Contains(s.Finalizers, csi.Finalizer) {
			return nil
		}
		if err := r.pool.DeleteSnapshot(s.Name); err != nil {
			return err
		}
		r.poolChanged()
		return r.removeFinalizer(ctx, api.SnapshotResource, s.Name, s.Finalizers)
	}
	if !slices.Contains(s.Finalizers, csi.Finalizer) {
		return nil
	}
	st := s.Status
	ps, err := r.pool.CreateSnapshot(s.Name, s.Spec.SourceVolume)
	switch {
	case errors.Is(err, pool.ErrNotFound):
		st.ReadyToUse, st.Reason, st.Message = false, api.ReasonSourceNotFound, err.Error()
	case err != nil:
		st.ReadyToUse, st.Reason, st.Message = false, "Error", err.Error()
	default:
		st.ReadyToUse, st.Reason, st.Message = true, "", ""
		st.SizeBytes, st.CreationTime = ps.SizeBytes, ps.CreationTime.Format(time.RFC3339)
		r.poolChanged()
	}
	if reflect.DeepEqual(st, s.Status) {
		return nil
	}
	s.Status = st
	return r.updateStatus(ctx, api.SnapshotResource, s)
}

func (r *reconciler) updateStatus(ctx context.Context, res schema.GroupVersionResource, obj runtime.Object) error {
	u, err := api.ToUnstructured(obj)
	if err != nil {
		return err
	}
	_, err = r.client.Resource(res).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// removeFinalizer drops ours with a JSON patch guarded by the list it saw,
// so a concurrent change is not overwritten.
func (r *reconciler) removeFinalizer(ctx context.Context, res schema.GroupVersionResource, name string, finalizers []string) error {
	kept := slices.DeleteFunc(slices.Clone(finalizers), func(f string) bool { return f == csi.Finalizer })
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/finalizers", "value": finalizers},
		{"op": "replace", "path": "/metadata/finalizers", "value": kept},
	})
	if err != nil {
		return err
	}
	_, err = r.client.Resource(res).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// publishPool writes this node's Pool object at start, after each change
// (at most once a second) and every poolInterval.
func (r *reconciler) publishPool(ctx context.Context) {
	tick := time.NewTicker(poolInterval)
	defer tick.Stop()
	for {
		if err := r.writePool(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(r.log, "csi: pool %s: %v\n", r.nodeName, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.poke:
			// Changes come in bursts (a bench of PVCs): one write for them all.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (r *reconciler) writePool(ctx context.Context) error {
	st, err := r.pool.Stats()
	if err != nil {
		return err
	}
	status := api.PoolStatus{
		Backend: st.Backend, TotalBytes: st.TotalBytes, FreeBytes: st.FreeBytes,
		MaxVolumeSizeBytes: st.MaxVolumeSizeBytes, Volumes: st.Volumes,
		UpdateTime: time.Now().UTC().Format(time.RFC3339),
	}
	pools := r.client.Resource(api.PoolResource)
	u, err := pools.Get(ctx, r.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj, err := api.ToUnstructured(&api.Pool{ObjectMeta: metav1.ObjectMeta{Name: r.nodeName}})
		if err != nil {
			return err
		}
		if u, err = pools.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create: %w", err)
		}
	} else if err != nil {
		return err
	}
	p, err := api.FromUnstructured[api.Pool](u)
	if err != nil {
		return err
	}
	p.Status = status
	out, err := api.ToUnstructured(p)
	if err != nil {
		return err
	}
	_, err = pools.UpdateStatus(ctx, out, metav1.UpdateOptions{})
	return err
}

// Reconcile runs the reconciler of node nodeName over p until ctx ends:
// what the plugin does after Start, for tests that bring their own pool
// and API server.
func Reconcile(ctx context.Context, client dynamic.Interface, nodeName string, p pool.Pool, log io.Writer) {
	var mu sync.Mutex
	newReconciler(client, nodeName, p, func() func() { mu.Lock(); return mu.Unlock }, log).run(ctx)
}
