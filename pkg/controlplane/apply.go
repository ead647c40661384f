package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// managedByLabels marks every object the control plane creates.
var managedByLabels = map[string]string{"app.kubernetes.io/managed-by": "vcluster-standalone"}

// renderedHashAnnotation records the hash of the object as the control plane
// rendered it. An addon is updated only when that rendering changes (a new
// release or a config change); changes users make in between, such as
// scaling CoreDNS, survive restarts until then.
const renderedHashAnnotation = "vcluster-standalone.io/rendered-hash"

// typedClient is the part of every client-go typed resource client ensure uses.
type typedClient[T metav1.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// ensure creates want, or lets sync bring the existing object in line with
// it and updates it only when sync reports a change: restarts write nothing
// when everything is in place. It reads before creating: a create of an
// existing Service would fail on its cluster IP, not as AlreadyExists.
func ensure[T metav1.Object](ctx context.Context, api typedClient[T], kind string, want T, sync func(got, want T) bool) error {
	name := want.GetName()
	if ns := want.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	got, err := api.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s %s appeared while being created; retrying", kind, name)
		}
		if err != nil {
			return fmt.Errorf("failed to create %s %s: %w", kind, name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read %s %s: %w", kind, name, err)
	}
	if !sync(got, want) {
		return nil
	}
	if _, err := api.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to update %s %s: %w", kind, name, err)
	}
	return nil
}

// syncField returns a sync function for objects whose managed content is one
// field (ConfigMap data, RBAC rules or subjects): it is always restored.
func syncField[T metav1.Object, F any](field func(T) *F) func(got, want T) bool {
	return func(got, want T) bool {
		if reflect.DeepEqual(*field(got), *field(want)) {
			return false
		}
		*field(got) = *field(want)
		return true
	}
}

// withRenderedHash stamps obj with the hash of its rendering and returns it.
func withRenderedHash[T metav1.Object](obj T) T {
	raw, err := json.Marshal(obj)
	if err != nil {
		panic(fmt.Sprintf("rendered object does not marshal: %v", err)) // typed objects always do
	}
	sum := sha256.Sum256(raw)
	annotations := maps.Clone(obj.GetAnnotations())
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[renderedHashAnnotation] = hex.EncodeToString(sum[:])
	obj.SetAnnotations(annotations)
	return obj
}

// syncRendered returns a sync function for rendered addon objects: nothing
// changes while the stored hash matches want's; otherwise our labels,
// annotations and content (copied by copyContent) replace the existing ones.
func syncRendered[T metav1.Object](copyContent func(dst, src T)) func(got, want T) bool {
	return func(got, want T) bool {
		if got.GetAnnotations()[renderedHashAnnotation] == want.GetAnnotations()[renderedHashAnnotation] {
			return false
		}
		got.SetLabels(mergeMaps(got.GetLabels(), want.GetLabels()))
		got.SetAnnotations(mergeMaps(got.GetAnnotations(), want.GetAnnotations()))
		copyContent(got, want)
		return true
	}
}

func mergeMaps(dst, src map[string]string) map[string]string {
	out := maps.Clone(dst)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, src)
	return out
}

func withManagedBy(labels map[string]string) map[string]string {
	return mergeMaps(labels, managedByLabels)
}
