package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// managedByLabels marks every object the control plane creates.
var managedByLabels = map[string]string{"app.kubernetes.io/managed-by": "vcluster-standalone"}

// renderedHashAnnotation records the hash of the object as the control plane
// rendered it. An addon is updated only when that rendering changes (a new
// release or a config change); changes users make in between, such as
// scaling CoreDNS, survive restarts until then.
const renderedHashAnnotation = "vcluster-standalone.io/rendered-hash"

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
