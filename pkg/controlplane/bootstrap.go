package controlplane

import (
	"context"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/kubeapply"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// bootstrapObjects creates, idempotently, the cluster objects the control
// plane itself depends on, then waits until the cluster accepts workloads
// (the default ServiceAccount exists), so "ready" means usable.
type bootstrapObjects struct {
	kubeconfig string // super-admin: the only identity that can grant rights at first start
	client     kubernetes.Interface
}

func (b *bootstrapObjects) Name() string               { return "bootstrap objects" }
func (b *bootstrapObjects) Init(context.Context) error { return nil }
func (b *bootstrapObjects) Stop() error                { return nil }

func (b *bootstrapObjects) Start(ctx context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", b.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	b.client = client
	// admin.conf users are cluster-admins through a binding that can be
	// removed, unlike membership of system:masters (kubeadm does the same).
	bindings := []*rbacv1.ClusterRoleBinding{
		clusterRoleBinding("vcluster-standalone:cluster-admins", "cluster-admin", rbacv1.GroupKind, pki.ClusterAdminGroup),
		// The apiserver reaches kubelets (logs, exec) with least privilege.
		clusterRoleBinding("vcluster-standalone:apiserver-kubelet-client", "system:kubelet-api-admin", rbacv1.UserKind, pki.KubeletClientUser),
	}
	for _, crb := range bindings {
		if err := kubeapply.EnsureBinding(ctx, client.RbacV1().ClusterRoleBindings(), crb); err != nil {
			return err
		}
	}
	return ensureControllerGrants(ctx, client)
}

// Ready waits for the service-account controller to create default/default:
// until then every Pod create in the default namespace is refused.
func (b *bootstrapObjects) Ready(ctx context.Context) error {
	return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := b.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func clusterRoleBinding(name, role, kind, subject string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "vcluster-standalone"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: kind, Name: subject}},
	}
}
