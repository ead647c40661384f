package controlplane

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/netpol"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func TestEmbeddedCRDIsClusterNetworkPolicyV1beta1(t *testing.T) {
	crds, err := renderCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) == 0 {
		t.Skip("built without the CRD manifests: run make crds (make build and make test do)")
	}
	crd := crds[0]
	if crd.GetName() != cnpResource.Resource+"."+cnpResource.Group || crd.GetLabels()["app.kubernetes.io/managed-by"] == "" ||
		crd.GetAnnotations()[renderedHashAnnotation] == "" {
		t.Fatalf("CRD %s labels %v annotations %v", crd.GetName(), crd.GetLabels(), crd.GetAnnotations())
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	served := false
	for _, v := range versions {
		m, _ := v.(map[string]any)
		served = served || m["name"] == cnpResource.Version && m["served"] == true
	}
	if !served {
		t.Fatalf("the CRD does not serve %s", cnpResource.Version)
	}
}

// The built-in objects must say what nodes enforce: compiled as ordinary
// ClusterNetworkPolicies (label removed, settings without the built-in
// rules) they give the same verdicts as the settings.
func TestBuiltinClusterPoliciesTellTheTruth(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p", UID: types.UID("p")},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.244.1.2"}}},
	}
	peer := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "q", UID: types.UID("q")},
		Spec:       corev1.PodSpec{NodeName: "n2"},
		Status:     corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.244.2.2"}}},
	}
	dsts := []string{"10.244.2.2", "10.96.0.10", "169.254.169.254", "8.8.8.8", "192.0.2.10", "203.0.113.5"}
	for _, tc := range []struct {
		name         string
		publicEgress bool
		cidr         string
		except       []string
		objects      int
	}{
		{"defaults: metadata denied", true, "0.0.0.0/0", []string{"169.254.169.254/32"}, 1},
		{"public egress off", false, "", []string{"169.254.169.254/32"}, 2},
		{"public egress limited to a CIDR", true, "192.0.2.0/24", nil, 1},
		{"nothing built in", true, "0.0.0.0/0", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := config.ClusterSettings{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", NetworkPolicy: config.NetworkPolicySettings{
				Enabled: true, PublicEgress: tc.publicEgress, PublicEgressCIDR: tc.cidr, DeniedEgress: tc.except}}
			objects := builtinClusterPolicies(s)
			if len(objects) != tc.objects {
				t.Fatalf("%d built-in objects, want %d", len(objects), tc.objects)
			}
			base := netpol.Input{
				NodeName: "n1", NodePodCIDR: netip.MustParsePrefix("10.244.1.0/24"),
				ClusterRanges: []netip.Prefix{netip.MustParsePrefix(s.PodCIDR), netip.MustParsePrefix(s.ServiceCIDR)},
				Pods:          []*corev1.Pod{pod, peer},
				Namespaces:    []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, {ObjectMeta: metav1.ObjectMeta{Name: "y"}}},
			}
			fromSettings := base
			fromSettings.PublicEgress = tc.publicEgress
			fromSettings.PublicEgressCIDR = netip.MustParsePrefix("0.0.0.0/0")
			if tc.cidr != "" {
				fromSettings.PublicEgressCIDR = netip.MustParsePrefix(tc.cidr)
			}
			for _, e := range tc.except {
				fromSettings.DeniedEgress = append(fromSettings.DeniedEgress, netip.MustParsePrefix(e))
			}
			fromObjects := base
			fromObjects.PublicEgress, fromObjects.PublicEgressCIDR = true, netip.MustParsePrefix("0.0.0.0/0")
			for _, o := range objects {
				if o.GetLabels()[config.BuiltinClusterPolicyLabel] != "true" {
					t.Fatalf("%s lacks the built-in label", o.GetName())
				}
				o = o.DeepCopy()
				o.SetLabels(nil)
				p, err := netpol.ClusterNetworkPolicyFrom(o)
				if err != nil {
					t.Fatal(err)
				}
				fromObjects.ClusterPolicies = append(fromObjects.ClusterPolicies, p)
			}
			want, got := netpol.Compile(fromSettings), netpol.Compile(fromObjects)
			for _, dst := range dsts {
				pkt := netpol.Packet{Src: netip.MustParseAddr("10.244.1.2"), Dst: netip.MustParseAddr(dst), Proto: netpol.ProtoTCP, DstPort: 80}
				w, err1 := want.Allows(pkt)
				g, err2 := got.Allows(pkt)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if w != g {
					t.Errorf("to %s: the objects allow=%t, the settings %t", dst, g, w)
				}
			}
		})
	}
}
