package controlplane

import (
	"context"

	certv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/pkg/controller/certificates/rootcacertpublisher"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinserver"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/kubeapply"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// grant is one binding of a controller's rights: cluster-wide when
// Namespace is empty, else only in that namespace.
type grant struct {
	Controller string // pki.CSRApprover, pki.JoinObjects, pki.Addons or pki.CSI
	Namespace  string
	Rules      []rbacv1.PolicyRule
}

func rule(groups, resources, verbs []string, names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs, ResourceNames: names}
}

var (
	core     = []string{""}
	rbac     = []string{rbacv1.GroupName}
	readOnly = []string{"get", "list", "watch"}
	// kubeapply reads, creates and updates; a changed roleRef or a
	// Service's immutable field is replaced, hence delete.
	manage = []string{"get", "create", "update", "delete"}
	events = []rbacv1.PolicyRule{
		rule(core, []string{"events"}, []string{"create", "update", "patch"}),
		rule([]string{"events.k8s.io"}, []string{"events"}, []string{"create", "update", "patch"}),
	}
)

// joinBoundRoles are the ClusterRoles the join objects bind to bootstrap
// tokens and nodes (pkg/joinserver, EnsureClusterObjects).
var joinBoundRoles = []string{
	"system:node-bootstrapper",
	"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
	joinserver.GetNodesRole,
	joinserver.NetworkPolicyReaderRole,
}

// controllerGrants are the control plane controllers' rights. Only
// bootstrapObjects runs as system:masters, to create these; RBAC's
// escalation check then limits every controller to binding roles it is
// allowed to bind (by name) or whose rights it holds itself.
func controllerGrants() []grant {
	return []grant{
		{Controller: pki.CSRApprover, Rules: append([]rbacv1.PolicyRule{
			rule([]string{certv1.GroupName}, []string{"certificatesigningrequests"}, readOnly),
			rule([]string{certv1.GroupName}, []string{"certificatesigningrequests/approval"}, []string{"update"}),
			rule([]string{certv1.GroupName}, []string{"signers"}, []string{"approve"},
				certv1.KubeletServingSignerName, certv1.KubeAPIServerClientKubeletSignerName),
			rule(core, []string{"nodes"}, readOnly),
		}, events...)},
		{Controller: pki.JoinObjects, Rules: []rbacv1.PolicyRule{
			rule(rbac, []string{"clusterroles", "clusterrolebindings"}, manage),
			rule(rbac, []string{"clusterroles"}, []string{"bind"}, joinBoundRoles...),
			// The rights it hands to bootstrap tokens: it may grant them
			// because it holds them.
			rule(core, []string{"nodes"}, []string{"get"}),
			rule(core, []string{"pods", "namespaces"}, []string{"get", "list", "watch"}),
			// kube-root-ca.crt in every namespace (trustPublisher): that
			// ConfigMap alone (its informer lists by name), created anywhere.
			rule(core, []string{"configmaps"}, []string{"get", "list", "watch", "update"}, rootcacertpublisher.RootCACertConfigMapName),
			rule(core, []string{"configmaps"}, []string{"create"}),
			rule([]string{"networking.k8s.io"}, []string{"networkpolicies"}, []string{"get", "list", "watch"}),
			rule([]string{"policy.networking.k8s.io"}, []string{"clusternetworkpolicies"}, []string{"get", "list", "watch"}),
		}},
		{Controller: pki.JoinObjects, Namespace: metav1.NamespacePublic, Rules: []rbacv1.PolicyRule{
			rule(core, []string{"configmaps"}, manage),
			rule(rbac, []string{"roles", "rolebindings"}, manage),
		}},
		{Controller: pki.Addons, Rules: append([]rbacv1.PolicyRule{
			rule(rbac, []string{"clusterroles", "clusterrolebindings"}, manage),
			rule(rbac, []string{"clusterroles"}, []string{"bind"}, "system:node-proxier"),
			// The local node's role labels and taint (nodeRole), and what
			// CoreDNS' ClusterRole grants, which it must hold to grant.
			rule(core, []string{"nodes"}, []string{"get", "list", "watch", "update", "patch"}),
			rule(core, []string{"endpoints", "services", "pods", "namespaces"}, []string{"list", "watch"}),
			rule([]string{"discovery.k8s.io"}, []string{"endpointslices"}, []string{"list", "watch"}),
			// The ClusterNetworkPolicy CRD, the built-in policies and their guard.
			rule([]string{"apiextensions.k8s.io"}, []string{"customresourcedefinitions"}, manage),
			rule([]string{"policy.networking.k8s.io"}, []string{"clusternetworkpolicies"}, append([]string{"list"}, manage...)),
			rule([]string{"admissionregistration.k8s.io"}, []string{"validatingadmissionpolicies", "validatingadmissionpolicybindings"}, manage),
		}, events...)},
		{Controller: pki.Addons, Namespace: metav1.NamespaceSystem, Rules: []rbacv1.PolicyRule{
			rule(core, []string{"configmaps", "serviceaccounts", "services"}, manage),
			rule([]string{"apps"}, []string{"deployments"}, manage),
			rule([]string{"policy"}, []string{"poddisruptionbudgets"}, manage),
			rule(rbac, []string{"roles", "rolebindings"}, manage),
		}},
		{Controller: pki.CSI, Rules: csiControllerRules()},
		{Controller: pki.CSI, Namespace: metav1.NamespaceSystem, Rules: []rbacv1.PolicyRule{
			rule([]string{"storage.k8s.io"}, []string{"csistoragecapacities"}, []string{"get", "list", "watch", "create", "update", "delete"}),
		}},
	}
}

// csiControllerRules are the CSI controller's cluster-wide rights: its
// addon objects, provisioning, resizing, snapshots and the node GC.
func csiControllerRules() []rbacv1.PolicyRule {
	storage := []string{"storage.k8s.io"}
	snapshot := []string{"snapshot.storage.k8s.io"}
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	return append([]rbacv1.PolicyRule{
		rule([]string{"apiextensions.k8s.io"}, []string{"customresourcedefinitions"}, []string{"get", "create", "update"}),
		rule([]string{"admissionregistration.k8s.io"}, []string{"validatingadmissionpolicies", "validatingadmissionpolicybindings"}, manage),
		rule(rbac, []string{"clusterroles", "clusterrolebindings"}, manage),
		rule(storage, []string{"csidrivers"}, manage),
		rule(storage, []string{"storageclasses"}, []string{"get", "list", "watch", "create", "update"}),
		rule([]string{api.Group}, []string{"*"}, all),
		rule(core, []string{"persistentvolumes"}, all),
		rule(core, []string{"persistentvolumeclaims"}, []string{"get", "list", "watch", "update", "patch"}),
		rule(core, []string{"persistentvolumeclaims/status"}, []string{"update", "patch"}),
		rule(core, []string{"nodes"}, readOnly),
		rule(snapshot, []string{"volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses"}, all),
		rule(snapshot, []string{"volumesnapshots/status", "volumesnapshotcontents/status"}, []string{"update", "patch"}),
	}, events...)
}

// grantName names a grant's role and binding.
func grantName(g grant) string {
	if g.Namespace == "" {
		return pki.ControllerUser(g.Controller)
	}
	return pki.ControllerUser(g.Controller) + ":" + g.Namespace
}

// ensureControllerGrants creates or restores each controller's ClusterRole
// and its ClusterRoleBinding or, for a namespaced grant, RoleBinding.
func ensureControllerGrants(ctx context.Context, client kubernetes.Interface) error {
	for _, g := range controllerGrants() {
		name := grantName(g)
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: withManagedBy(nil)}, Rules: g.Rules}
		if err := kubeapply.Ensure(ctx, client.RbacV1().ClusterRoles(), "ClusterRole", role,
			kubeapply.SyncField(func(o *rbacv1.ClusterRole) *[]rbacv1.PolicyRule { return &o.Rules })); err != nil {
			return err
		}
		subject := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: pki.ControllerUser(g.Controller)}
		if g.Namespace == "" {
			if err := kubeapply.EnsureBinding(ctx, client.RbacV1().ClusterRoleBindings(), clusterRoleBinding(name, name, rbacv1.UserKind, subject.Name)); err != nil {
				return err
			}
			continue
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.Namespace, Labels: withManagedBy(nil)},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{subject},
		}
		if err := kubeapply.EnsureBinding(ctx, client.RbacV1().RoleBindings(g.Namespace), binding); err != nil {
			return err
		}
	}
	return nil
}

// controllerClient returns a client factory for a controller's kubeconfig.
func controllerClient(paths Paths, controller string) func() (kubernetes.Interface, error) {
	return controllerClientOf(paths, controller, func(c *rest.Config) (kubernetes.Interface, error) { return kubernetes.NewForConfig(c) })
}

// controllerDynamicClient is controllerClient for custom resources and CRDs.
func controllerDynamicClient(paths Paths, controller string) func() (dynamic.Interface, error) {
	return controllerClientOf(paths, controller, func(c *rest.Config) (dynamic.Interface, error) { return dynamic.NewForConfig(c) })
}

func controllerClientOf[T any](paths Paths, controller string, client func(*rest.Config) (T, error)) func() (T, error) {
	return func() (T, error) {
		cfg, err := clientcmd.BuildConfigFromFlags("", paths.Kubeconfig(controller))
		if err != nil {
			var none T
			return none, err
		}
		return client(cfg)
	}
}
