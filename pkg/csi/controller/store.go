package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
)

// nameAnnotation keeps the CSI name a volume or snapshot was created with
// when it is not a valid object name.
const nameAnnotation = "csi.vcluster-standalone.io/csi-name"

// objectID maps a CSI name to the object name (= CSI id): the name itself
// when Kubernetes accepts it (pvc-<uid>, snapshot-<uid>), else a stable hash.
func objectID(prefix, name string) string {
	if len(validation.IsDNS1123Subdomain(name)) == 0 && len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return prefix + "-" + hex.EncodeToString(sum[:16])
}

// typed is a cluster-scoped resource of ours, reached through the dynamic client.
type typed[T any, P interface {
	*T
	runtime.Object
	metav1.Object
}] struct {
	client dynamic.ResourceInterface
}

func newTyped[T any, P interface {
	*T
	runtime.Object
	metav1.Object
}](client dynamic.Interface, gvr schema.GroupVersionResource) typed[T, P] {
	return typed[T, P]{client: client.Resource(gvr)}
}

func (r typed[T, P]) Get(ctx context.Context, name string) (P, error) {
	u, err := r.client.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return api.FromUnstructured[T, P](u)
}

func (r typed[T, P]) List(ctx context.Context) ([]P, error) {
	list, err := r.client.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]P, 0, len(list.Items))
	for i := range list.Items {
		obj, err := api.FromUnstructured[T, P](&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	return out, nil
}

func (r typed[T, P]) Create(ctx context.Context, obj P) (P, error) {
	u, err := api.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u, err = r.client.Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return api.FromUnstructured[T, P](u)
}

// Delete deletes name; a missing object is not an error.
func (r typed[T, P]) Delete(ctx context.Context, name string) error {
	err := r.client.Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// MergePatch applies a JSON merge patch built from patch.
func (r typed[T, P]) MergePatch(ctx context.Context, name string, patch map[string]any, subresources ...string) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = r.client.Patch(ctx, name, types.MergePatchType, data, metav1.PatchOptions{}, subresources...)
	return err
}

// RemoveFinalizers drops every finalizer of name (the GC, once its node is gone).
func (r typed[T, P]) RemoveFinalizers(ctx context.Context, name string) error {
	err := r.MergePatch(ctx, name, map[string]any{"metadata": map[string]any{"finalizers": nil}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Wait watches name until done says so; done sees nil once the object is gone.
func (r typed[T, P]) Wait(ctx context.Context, name string, done func(P) (bool, error)) error {
	for {
		u, err := r.client.Get(ctx, name, metav1.GetOptions{})
		var obj P
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return err
		default:
			if obj, err = api.FromUnstructured[T, P](u); err != nil {
				return err
			}
		}
		if ok, err := done(obj); ok || err != nil {
			return err
		}
		opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
		if u != nil {
			opts.ResourceVersion = u.GetResourceVersion()
		}
		w, err := r.client.Watch(ctx, opts)
		if err != nil {
			return err
		}
		if err := r.watchUntil(ctx, w, done); err != errWatchEnded {
			w.Stop()
			return err
		}
		w.Stop()
	}
}

var errWatchEnded = fmt.Errorf("watch ended")

func (r typed[T, P]) watchUntil(ctx context.Context, w watch.Interface, done func(P) (bool, error)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return errWatchEnded
			}
			var obj P
			switch ev.Type {
			case watch.Deleted:
			case watch.Added, watch.Modified:
				u, isU := ev.Object.(*unstructured.Unstructured)
				if !isU {
					continue
				}
				var err error
				if obj, err = api.FromUnstructured[T, P](u); err != nil {
					return err
				}
			default:
				return errWatchEnded
			}
			if ok, err := done(obj); ok || err != nil {
				return err
			}
		}
	}
}

// store holds the three resources.
type store struct {
	volumes   typed[api.Volume, *api.Volume]
	snapshots typed[api.Snapshot, *api.Snapshot]
	pools     typed[api.Pool, *api.Pool]
}

func newStore(client dynamic.Interface) *store {
	return &store{
		volumes:   newTyped[api.Volume](client, api.VolumeResource),
		snapshots: newTyped[api.Snapshot](client, api.SnapshotResource),
		pools:     newTyped[api.Pool](client, api.PoolResource),
	}
}
