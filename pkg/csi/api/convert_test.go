package api

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCRDsDecodeAndNameTheirKinds(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"volumes": "Volume", "snapshots": "Snapshot", "pools": "Pool"}
	if len(crds) != len(want) {
		t.Fatalf("got %d CRDs, want %d", len(crds), len(want))
	}
	for _, crd := range crds {
		kind, ok := want[crd.Spec.Names.Plural]
		if !ok || crd.Spec.Names.Kind != kind || crd.Spec.Group != Group || crd.Name != crd.Spec.Names.Plural+"."+Group {
			t.Errorf("CRD %s: names %+v group %s", crd.Name, crd.Spec.Names, crd.Spec.Group)
		}
		if crd.Spec.Scope != "Cluster" {
			t.Errorf("CRD %s: scope %s, want Cluster", crd.Name, crd.Spec.Scope)
		}
		v := crd.Spec.Versions[0]
		if v.Name != Version || v.Subresources == nil || v.Subresources.Status == nil || v.Schema == nil {
			t.Errorf("CRD %s: version %s lacks status subresource or schema", crd.Name, v.Name)
		}
	}
}

func TestVolumeRoundTripsThroughUnstructured(t *testing.T) {
	in := &Volume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-1", Finalizers: []string{"x"}},
		Spec:       VolumeSpec{Node: "n1", CapacityBytes: 1 << 30, AccessType: AccessBlock, Source: &VolumeSource{Kind: SourceSnapshot, Name: "snap-1"}},
		Status:     VolumeStatus{Phase: VolumeReady, CapacityBytes: 1 << 30},
	}
	u, err := ToUnstructured(in)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetKind() != "Volume" || u.GetAPIVersion() != Group+"/"+Version {
		t.Fatalf("kind %q apiVersion %q", u.GetKind(), u.GetAPIVersion())
	}
	out, err := FromUnstructured[Volume](u)
	if err != nil {
		t.Fatal(err)
	}
	if out.Spec.Source == nil || *out.Spec.Source != *in.Spec.Source || out.Spec.Node != "n1" || out.Status.Phase != VolumeReady {
		t.Fatalf("round trip changed the volume: %+v", out)
	}
	copied := in.DeepCopy()
	copied.Spec.Source.Name = "other"
	copied.Finalizers[0] = "y"
	if in.Spec.Source.Name != "snap-1" || in.Finalizers[0] != "x" {
		t.Fatal("DeepCopy shares the source or finalizers with the original")
	}
}
