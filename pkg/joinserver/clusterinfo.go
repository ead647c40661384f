package joinserver

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/kubeapply"
)

// Names of the objects EnsureClusterObjects manages.
const (
	BootstrapperBinding = "vcluster-standalone:kubelet-bootstrap"
	AutoRenewBinding    = "vcluster-standalone:node-autoapprove-certificate-rotation"
	GetNodesRole        = "vcluster-standalone:get-nodes"
	// NetworkPolicyReaderRole lets every node watch what its NetworkPolicy
	// table is compiled from (the Node authorizer only shows a node its own pods).
	NetworkPolicyReaderRole    = "vcluster-standalone:network-policy-reader"
	ClusterInfoReaderRole      = "vcluster-standalone:bootstrap-signer-clusterinfo"
	KubeletServingCAReaderRole = "vcluster-standalone:kubelet-serving-ca-reader"
	selfNodeClientRole         = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
	// RemovedAutoApproveBinding is deleted where an earlier release made it.
	RemovedAutoApproveBinding = "vcluster-standalone:node-autoapprove-bootstrap"
)

var managedBy = map[string]string{"app.kubernetes.io/managed-by": "vcluster-standalone"}

// ClusterInfoKubeconfig is the kubeconfig published in kube-public/cluster-info:
// the API server URL and the cluster CA, no credentials (kubeadm's format).
func ClusterInfoKubeconfig(server string, caPEM []byte) ([]byte, error) {
	cfg := &clientcmdapi.Config{Clusters: map[string]*clientcmdapi.Cluster{
		"": {Server: server, CertificateAuthorityData: caPEM},
	}}
	return clientcmd.Write(*cfg)
}

// EnsureClusterObjects creates or repairs what joining nodes rely on: the
// RBAC of bootstrap tokens and nodes, the cluster-info ConfigMap that
// bootstrapsigner signs with every token, readable anonymously, and the
// kubelet-serving CA certificate, readable by nodes and join tokens.
func EnsureClusterObjects(ctx context.Context, client kubernetes.Interface, server string, caPEM, kubeletServingCAPEM []byte) error {
	if err := EnsureClusterInfo(ctx, client, server, caPEM); err != nil {
		return err
	}
	if err := ensureKubeletServingCA(ctx, client, kubeletServingCAPEM); err != nil {
		return err
	}
	// Earlier releases let kube-controller-manager approve every join
	// token's client CSR through this binding; CSRApprover decides them now,
	// refusing names a Node holds.
	if _, err := client.RbacV1().ClusterRoleBindings().Get(ctx, RemovedAutoApproveBinding, metav1.GetOptions{}); err == nil {
		err = client.RbacV1().ClusterRoleBindings().Delete(ctx, RemovedAutoApproveBinding, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to delete ClusterRoleBinding %s: %w", RemovedAutoApproveBinding, err)
		}
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to read ClusterRoleBinding %s: %w", RemovedAutoApproveBinding, err)
	}
	for _, cr := range []*rbacv1.ClusterRole{{
		ObjectMeta: metav1.ObjectMeta{Name: GetNodesRole, Labels: managedBy},
		// node-agent join checks whether a Node of its name is already there.
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"nodes"}}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: NetworkPolicyReaderRole, Labels: managedBy},
		Rules: []rbacv1.PolicyRule{
			{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}},
			{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}},
			{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{"policy.networking.k8s.io"}, Resources: []string{"clusternetworkpolicies"}},
		},
	}} {
		if err := kubeapply.Ensure(ctx, client.RbacV1().ClusterRoles(), "ClusterRole", cr, syncClusterRoleRules); err != nil {
			return err
		}
	}
	for _, crb := range []*rbacv1.ClusterRoleBinding{
		clusterRoleBinding(BootstrapperBinding, "system:node-bootstrapper", join.NodeBootstrapGroup),
		clusterRoleBinding(AutoRenewBinding, selfNodeClientRole, user.NodesGroup),
		clusterRoleBinding(GetNodesRole, GetNodesRole, join.NodeBootstrapGroup),
		clusterRoleBinding(NetworkPolicyReaderRole, NetworkPolicyReaderRole, user.NodesGroup),
	} {
		if err := kubeapply.EnsureBinding(ctx, client.RbacV1().ClusterRoleBindings(), crb); err != nil {
			return err
		}
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoReaderRole, Namespace: metav1.NamespacePublic, Labels: managedBy},
		Rules: []rbacv1.PolicyRule{{
			Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo},
		}},
	}
	if err := kubeapply.Ensure(ctx, client.RbacV1().Roles(role.Namespace), "Role", role, syncRoleRules); err != nil {
		return err
	}
	return kubeapply.EnsureBinding(ctx, client.RbacV1().RoleBindings(metav1.NamespacePublic), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ClusterInfoReaderRole, Namespace: metav1.NamespacePublic, Labels: managedBy},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ClusterInfoReaderRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user.Anonymous}},
	})
}

// syncClusterRoleRules and syncRoleRules restore a role's rules.
var (
	syncClusterRoleRules = kubeapply.SyncField(func(o *rbacv1.ClusterRole) *[]rbacv1.PolicyRule { return &o.Rules })
	syncRoleRules        = kubeapply.SyncField(func(o *rbacv1.Role) *[]rbacv1.PolicyRule { return &o.Rules })
)

// ensureClusterInfo writes the kubeconfig key and keeps the JWS signatures
// bootstrapsigner adds (it re-signs when the content changes).
func ensureClusterInfo(ctx context.Context, client kubernetes.Interface, kubeconfig string) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic, Labels: managedBy},
		Data:       map[string]string{bootstrapapi.KubeConfigKey: kubeconfig},
	}
	return kubeapply.Ensure(ctx, client.CoreV1().ConfigMaps(cm.Namespace), "ConfigMap", cm, func(got, want *corev1.ConfigMap) bool {
		key := bootstrapapi.KubeConfigKey
		if got.Data[key] == want.Data[key] {
			return false
		}
		if got.Data == nil {
			got.Data = map[string]string{}
		}
		got.Data[key] = want.Data[key]
		return true
	})
}

// ensureKubeletServingCA publishes the kubelet-serving CA certificate and
// lets nodes and join tokens read it (that ConfigMap only).
func ensureKubeletServingCA(ctx context.Context, client kubernetes.Interface, caPEM []byte) error {
	ns, name := join.KubeletServingCANamespace, join.KubeletServingCAConfigMap
	want := map[string]string{join.KubeletServingCAKey: string(caPEM)}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: managedBy}, Data: want}
	if err := kubeapply.Ensure(ctx, client.CoreV1().ConfigMaps(ns), "ConfigMap", cm,
		kubeapply.SyncField(func(o *corev1.ConfigMap) *map[string]string { return &o.Data })); err != nil {
		return err
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: KubeletServingCAReaderRole, Namespace: ns, Labels: managedBy},
		Rules: []rbacv1.PolicyRule{{
			Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{name},
		}},
	}
	if err := kubeapply.Ensure(ctx, client.RbacV1().Roles(ns), "Role", role, syncRoleRules); err != nil {
		return err
	}
	return kubeapply.EnsureBinding(ctx, client.RbacV1().RoleBindings(ns), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: KubeletServingCAReaderRole, Namespace: ns, Labels: managedBy},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: KubeletServingCAReaderRole},
		Subjects: []rbacv1.Subject{
			{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: user.NodesGroup},
			{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: join.NodeBootstrapGroup},
		},
	})
}

func clusterRoleBinding(name, role, group string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: managedBy},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: group}},
	}
}

// ClusterObjects is the component that runs EnsureClusterObjects once the
// API server is up.
type ClusterObjects struct {
	Client func() (kubernetes.Interface, error)
	Server string // https://<advertiseAddress>:<apiPort>
	CAFile string // the cluster CA certificate (PEM)
	// KubeletServingCAFile is the kubelet-serving CA certificate (PEM), published for nodes.
	KubeletServingCAFile string
}

func (c *ClusterObjects) Name() string               { return "join objects" }
func (c *ClusterObjects) Init(context.Context) error { return nil }
func (c *ClusterObjects) Stop() error                { return nil }

func (c *ClusterObjects) Start(ctx context.Context) error {
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return fmt.Errorf("failed to read the cluster CA: %w", err)
	}
	servingCAPEM, err := os.ReadFile(c.KubeletServingCAFile)
	if err != nil {
		return fmt.Errorf("failed to read the kubelet-serving CA: %w", err)
	}
	client, err := c.Client()
	if err != nil {
		return err
	}
	// Retried briefly: right after the first start the apiserver may still
	// be creating kube-public.
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = EnsureClusterObjects(ctx, client, c.Server, caPEM, servingCAPEM)
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// EnsureClusterInfo publishes caPEM (the cluster CA's trust bundle) in
// kube-public/cluster-info: during a CA rotation joining nodes pin either CA,
// and joined nodes refresh their CA file from it.
func EnsureClusterInfo(ctx context.Context, client kubernetes.Interface, server string, caPEM []byte) error {
	kubeconfig, err := ClusterInfoKubeconfig(server, caPEM)
	if err != nil {
		return err
	}
	return ensureClusterInfo(ctx, client, string(kubeconfig))
}
