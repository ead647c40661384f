package api

import (
	_ "embed"
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

//go:embed crds.yaml
var crdsYAML string

// CRDs returns the three CustomResourceDefinitions, freshly decoded.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, doc := range strings.Split(crdsYAML, "\n---\n") {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict([]byte(doc), crd); err != nil {
			return nil, fmt.Errorf("embedded CSI CRD: %w", err)
		}
		crds = append(crds, crd)
	}
	return crds, nil
}

// FromUnstructured decodes u into a new typed object.
func FromUnstructured[T any, P interface {
	*T
	runtime.Object
}](u *unstructured.Unstructured) (P, error) {
	out := P(new(T))
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return nil, fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return out, nil
}

// ToUnstructured encodes obj with its apiVersion and kind set.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(GroupVersion.String())
	switch obj.(type) {
	case *Volume:
		u.SetKind("Volume")
	case *Snapshot:
		u.SetKind("Snapshot")
	case *Pool:
		u.SetKind("Pool")
	default:
		return nil, fmt.Errorf("not a CSI object: %T", obj)
	}
	return u, nil
}
