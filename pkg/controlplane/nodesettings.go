package controlplane

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/kubeapply"
)

// Names of the objects that let nodes read their settings and run kube-proxy.
const (
	nodeSettingsReader = "vcluster-standalone:node-agent-config-reader"
	nodeProxierBinding = "vcluster-standalone:node-proxier"
)

// nodeSettingsObjects renders what every node needs from the control plane:
// the ClusterSettings ConfigMap, readable (that one object only) by nodes and
// by joining nodes' bootstrap tokens, like kubeadm's kubelet-config; and the
// rights of kube-proxy, which runs inside node-agent with the node's own
// credential.
func nodeSettingsObjects(c *config.ControlPlane) (*corev1.ConfigMap, *rbacv1.Role, *rbacv1.RoleBinding, *rbacv1.ClusterRoleBinding, error) {
	data, err := config.MarshalClusterSettings(c.ClusterSettings())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ns := config.ClusterSettingsNamespace
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: config.ClusterSettingsName, Namespace: ns, Labels: withManagedBy(nil)},
		Data:       map[string]string{config.ClusterSettingsKey: data},
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: nodeSettingsReader, Namespace: ns, Labels: withManagedBy(nil)},
		Rules: []rbacv1.PolicyRule{{
			Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{config.ClusterSettingsName},
		}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: nodeSettingsReader, Namespace: ns, Labels: withManagedBy(nil)},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: nodeSettingsReader},
		Subjects: []rbacv1.Subject{
			{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: user.NodesGroup},
			{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: join.NodeBootstrapGroup},
		},
	}
	proxier := clusterRoleBinding(nodeProxierBinding, "system:node-proxier", rbacv1.GroupKind, user.NodesGroup)
	return cm, role, binding, proxier, nil
}

// ensureNodeSettings creates or restores the node settings objects; a
// config change (a new podCIDR, say) reaches the ConfigMap at the next start.
func ensureNodeSettings(ctx context.Context, client kubernetes.Interface, c *config.ControlPlane) error {
	cm, role, binding, proxier, err := nodeSettingsObjects(c)
	if err != nil {
		return err
	}
	if err := kubeapply.Ensure(ctx, client.CoreV1().ConfigMaps(cm.Namespace), "ConfigMap", cm,
		kubeapply.SyncField(func(o *corev1.ConfigMap) *map[string]string { return &o.Data })); err != nil {
		return err
	}
	if err := kubeapply.Ensure(ctx, client.RbacV1().Roles(role.Namespace), "Role", role,
		kubeapply.SyncField(func(o *rbacv1.Role) *[]rbacv1.PolicyRule { return &o.Rules })); err != nil {
		return err
	}
	if err := kubeapply.EnsureBinding(ctx, client.RbacV1().RoleBindings(binding.Namespace), binding); err != nil {
		return err
	}
	return kubeapply.EnsureBinding(ctx, client.RbacV1().ClusterRoleBindings(), proxier)
}
