package controlplane

import (
	"context"
	"embed"
	"fmt"
	"path"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/kubeapply"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// embeddedCRDs holds the CRD manifests `make build` copies from their Go
// modules (see crds/README.md).
//
//go:embed crds
var embeddedCRDs embed.FS

var (
	crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	cnpResource = schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1beta1", Resource: "clusternetworkpolicies"}
)

// Names of the built-in ClusterNetworkPolicies and of the admission policy
// that keeps them read-only.
const (
	builtinDeniedEgress = "vcluster-standalone-denied-egress"
	builtinPublicEgress = "vcluster-standalone-public-egress"
	builtinCNPGuard     = "vcluster-standalone-builtin-cluster-network-policies"
)

// renderCRDs decodes the embedded manifests, each stamped with its rendering's hash.
func renderCRDs() ([]*unstructured.Unstructured, error) {
	entries, err := embeddedCRDs.ReadDir("crds")
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		raw, err := embeddedCRDs.ReadFile(path.Join("crds", e.Name()))
		if err != nil {
			return nil, err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &obj.Object); err != nil {
			return nil, fmt.Errorf("embedded CRD %s: %w", e.Name(), err)
		}
		obj.SetLabels(withManagedBy(obj.GetLabels()))
		out = append(out, withRenderedHash(obj))
	}
	return out, nil
}

// dynamicAPI adapts a dynamic resource client to kubeapply.Client.
type dynamicAPI struct{ dynamic.ResourceInterface }

func (d dynamicAPI) Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions) (*unstructured.Unstructured, error) {
	return d.ResourceInterface.Create(ctx, obj, opts)
}

func (d dynamicAPI) Get(ctx context.Context, name string, opts metav1.GetOptions) (*unstructured.Unstructured, error) {
	return d.ResourceInterface.Get(ctx, name, opts)
}

func (d dynamicAPI) Update(ctx context.Context, obj *unstructured.Unstructured, opts metav1.UpdateOptions) (*unstructured.Unstructured, error) {
	return d.ResourceInterface.Update(ctx, obj, opts)
}

var syncSpec = syncRendered(func(dst, src *unstructured.Unstructured) { dst.Object["spec"] = src.Object["spec"] })

// ensureCRDs installs the embedded CRDs, rewriting one only when the
// release's manifest differs from the one it was last written from; it
// reports whether there were any.
func ensureCRDs(ctx context.Context, dyn dynamic.Interface) (bool, error) {
	crds, err := renderCRDs()
	if err != nil {
		return false, err
	}
	for _, crd := range crds {
		if err := kubeapply.Ensure(ctx, dynamicAPI{dyn.Resource(crdResource)}, "CustomResourceDefinition", crd, syncSpec); err != nil {
			return false, err
		}
	}
	return len(crds) > 0, nil
}

// ensureClusterNetworkPolicies installs the ClusterNetworkPolicy CRD and the
// built-in policies.
func ensureClusterNetworkPolicies(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, c *config.ControlPlane) error {
	installed, err := ensureCRDs(ctx, dyn)
	if err != nil {
		return err
	}
	if !installed {
		klog.InfoS("Built without CRD manifests (make build copies them): ClusterNetworkPolicy is not installed")
		return nil
	}
	return ensureBuiltinClusterPolicies(ctx, client, dyn, c.ClusterSettings())
}

// builtinClusterPolicies renders the policies.networkPolicy rules nodes
// enforce as the ClusterNetworkPolicies they amount to: an Admin-tier deny
// of publicEgress.except before every other policy, and with public egress
// off (or limited to a CIDR) a Baseline-tier deny of what lies outside the
// cluster after every other baseline policy.
func builtinClusterPolicies(s config.ClusterSettings) []*unstructured.Unstructured {
	if !s.NetworkPolicy.Enabled {
		return nil
	}
	allNamespaces := map[string]any{"namespaces": map[string]any{}}
	networks := func(cidrs ...string) []any {
		out := make([]any, 0, len(cidrs))
		for _, c := range cidrs {
			out = append(out, c)
		}
		return []any{map[string]any{"networks": out}}
	}
	policy := func(name, tier string, priority int64, description string, egress ...any) *unstructured.Unstructured {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": cnpResource.GroupVersion().String(),
			"kind":       "ClusterNetworkPolicy",
			"metadata": map[string]any{
				"name":        name,
				"labels":      toAny(withManagedBy(map[string]string{config.BuiltinClusterPolicyLabel: "true"})),
				"annotations": map[string]any{"vcluster-standalone.io/description": description},
			},
			"spec": map[string]any{"tier": tier, "priority": priority, "subject": allNamespaces, "egress": egress},
		}}
		return withRenderedHash(obj)
	}
	var out []*unstructured.Unstructured
	np := s.NetworkPolicy
	if len(np.DeniedEgress) > 0 {
		out = append(out, policy(builtinDeniedEgress, "Admin", 0,
			"policies.networkPolicy.workload.publicEgress.except: no pod may reach these addresses (the nodes may); evaluated before every other Admin policy",
			map[string]any{"name": "except", "action": "Deny", "to": networks(np.DeniedEgress...)}))
	}
	cidr := np.PublicEgressCIDR
	if cidr == "" {
		cidr = "0.0.0.0/0"
	}
	if !np.PublicEgress || cidr != "0.0.0.0/0" {
		inside := []string{s.PodCIDR, s.ServiceCIDR}
		description := "policies.networkPolicy.workload.publicEgress.enabled=false: pods may reach only the cluster (pods, services and every node's addresses) unless a NetworkPolicy of theirs allows more; evaluated after every other Baseline policy"
		if np.PublicEgress {
			inside = append(inside, cidr)
			description = "policies.networkPolicy.workload.publicEgress.cidr: outside the cluster (pods, services and every node's addresses) pods may reach only " + cidr + " unless a NetworkPolicy of theirs allows more; evaluated after every other Baseline policy"
		}
		out = append(out, policy(builtinPublicEgress, "Baseline", 1000, description,
			map[string]any{"name": "cluster", "action": "Pass", "to": networks(inside...)},
			map[string]any{"name": "outside-cluster", "action": "Deny", "to": networks("0.0.0.0/0")}))
	}
	return out
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ensureBuiltinClusterPolicies creates or updates the built-in
// ClusterNetworkPolicies, deletes those the config no longer asks for, and
// guards them: an admission policy refuses every change to them but this
// controller's own.
func ensureBuiltinClusterPolicies(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, s config.ClusterSettings) error {
	if err := ensureBuiltinGuard(ctx, client); err != nil {
		return err
	}
	api := dyn.Resource(cnpResource)
	wanted := map[string]bool{}
	for _, p := range builtinClusterPolicies(s) {
		wanted[p.GetName()] = true
		if err := kubeapply.Ensure(ctx, dynamicAPI{api}, "ClusterNetworkPolicy", p, syncSpec); err != nil {
			return err
		}
	}
	existing, err := api.List(ctx, metav1.ListOptions{LabelSelector: config.BuiltinClusterPolicyLabel + "=true"})
	if err != nil {
		return fmt.Errorf("failed to list the built-in ClusterNetworkPolicies: %w", err)
	}
	for _, p := range existing.Items {
		if wanted[p.GetName()] {
			continue
		}
		if err := api.Delete(ctx, p.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete ClusterNetworkPolicy %s: %w", p.GetName(), err)
		}
	}
	return nil
}

func ensureBuiltinGuard(ctx context.Context, client kubernetes.Interface) error {
	fail := admissionv1.Fail
	policy := withRenderedHash(&admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: builtinCNPGuard, Labels: withManagedBy(nil)},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{
				// Matches when the old or the new object carries the label,
				// so it can be neither removed nor added.
				ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{config.BuiltinClusterPolicyLabel: "true"}},
				ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update, admissionv1.Delete},
					Rule: admissionv1.Rule{APIGroups: []string{cnpResource.Group}, APIVersions: []string{"*"},
						Resources: []string{"clusternetworkpolicies", "clusternetworkpolicies/status"}},
				}}},
			},
			Validations: []admissionv1.Validation{{
				Expression: fmt.Sprintf("request.userInfo.username == %q", pki.ControllerUser(pki.Addons)),
				Message:    "this ClusterNetworkPolicy is built in and read-only: it shows policies.networkPolicy of the control plane's config; change that instead",
			}},
		},
	})
	binding := withRenderedHash(&admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: builtinCNPGuard, Labels: withManagedBy(nil)},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        builtinCNPGuard,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	})
	if err := kubeapply.Ensure(ctx, client.AdmissionregistrationV1().ValidatingAdmissionPolicies(), "ValidatingAdmissionPolicy", policy,
		syncRendered(func(dst, src *admissionv1.ValidatingAdmissionPolicy) { dst.Spec = src.Spec })); err != nil {
		return err
	}
	return kubeapply.Ensure(ctx, client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings(), "ValidatingAdmissionPolicyBinding", binding,
		syncRendered(func(dst, src *admissionv1.ValidatingAdmissionPolicyBinding) { dst.Spec = src.Spec }))
}
