package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

var cnpResource = schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1beta1", Resource: "clusternetworkpolicies"}

// TestClusterNetworkPolicyAPI: the control plane installs the
// ClusterNetworkPolicy CRD, shows the built-in policies rules as objects no
// one else may change, and the API refuses an invalid policy as upstream's
// CRD does.
func TestClusterNetworkPolicyAPI(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	defer cp.stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	api := dynamic.NewForConfigOrDie(cfg).Resource(cnpResource)
	const builtin = "vcluster-standalone-denied-egress"
	mustPoll(t, time.Minute, "the built-in ClusterNetworkPolicy", func(ctx context.Context) error {
		p, err := api.Get(ctx, builtin, metav1.GetOptions{})
		if err != nil {
			return err
		}
		tier, _, _ := unstructured.NestedString(p.Object, "spec", "tier")
		rules, _, _ := unstructured.NestedSlice(p.Object, "spec", "egress")
		if tier != "Admin" || len(rules) != 1 || !strings.Contains(fmt.Sprint(rules), "169.254.169.254/32") {
			return fmt.Errorf("tier %q, egress %v: want the Admin deny of the metadata address", tier, rules)
		}
		return nil
	})

	// The admin (system:masters) cannot change, relabel or delete it.
	ctx := context.Background()
	for what, err := range map[string]error{
		"patch": func() error {
			_, err := api.Patch(ctx, builtin, types.MergePatchType, []byte(`{"spec":{"priority":999}}`), metav1.PatchOptions{})
			return err
		}(),
		"unlabel": func() error {
			_, err := api.Patch(ctx, builtin, types.MergePatchType, []byte(`{"metadata":{"labels":{"netpol.vcluster-standalone.io/builtin":null}}}`), metav1.PatchOptions{})
			return err
		}(),
		"delete": api.Delete(ctx, builtin, metav1.DeleteOptions{}),
	} {
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("%s of the built-in policy: %v, want a refusal naming it read-only", what, err)
		}
	}

	// The admin's own policies are accepted, invalid ones refused by the CRD's schema.
	policy := func(name string, priority int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{"tier": "Baseline", "priority": priority,
				"subject": map[string]any{"namespaces": map[string]any{}},
				"ingress": []any{map[string]any{"action": "Deny", "from": []any{map[string]any{"namespaces": map[string]any{}}}}}},
		}}
	}
	if _, err := api.Create(ctx, policy("own", 10), metav1.CreateOptions{}); err != nil {
		t.Errorf("an admin's ClusterNetworkPolicy: %v", err)
	}
	if _, err := api.Create(ctx, policy("too-low", 1001), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "priority") {
		t.Errorf("priority 1001: %v, want a refusal naming spec.priority", err)
	}
	fakeBuiltin := policy("fake-builtin", 10)
	fakeBuiltin.SetLabels(map[string]string{"netpol.vcluster-standalone.io/builtin": "true"})
	if _, err := api.Create(ctx, fakeBuiltin, metav1.CreateOptions{}); err == nil {
		t.Error("an admin created an object posing as built-in")
	}
}
