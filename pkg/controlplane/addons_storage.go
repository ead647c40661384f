package controlplane

import (
	"context"
	"fmt"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	storageutil "k8s.io/kubernetes/pkg/apis/storage/util"
	"k8s.io/utils/ptr"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
	csicontroller "github.com/vcluster-standalone/vcluster-standalone/pkg/csi/controller"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/kubeapply"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/version"
)

// The storage addon's names.
const (
	// DefaultStorageClass is the default class, backed by each node's pool.
	DefaultStorageClass = "local"
	// csiNodeRole lets nodes read their volumes and snapshots and report on
	// them and on their pool; storageNodePolicy narrows it to their own.
	csiNodeRole       = "vcluster-standalone:csi-node"
	storageNodePolicy = "vcluster-standalone-csi-node-restriction"
)

// storageObjects renders the storage addon: CRDs, CSIDriver, default
// StorageClass and VolumeSnapshotClass, node RBAC and the admission policy
// keeping each node to its own objects.
type storageAddon struct {
	CRDs          []*apiextensionsv1.CustomResourceDefinition
	CSIDriver     *storagev1.CSIDriver
	StorageClass  *storagev1.StorageClass
	SnapshotClass *snapshotv1.VolumeSnapshotClass
	NodeRole      *rbacv1.ClusterRole
	NodeBinding   *rbacv1.ClusterRoleBinding
	Policy        *admissionv1.ValidatingAdmissionPolicy
	PolicyBinding *admissionv1.ValidatingAdmissionPolicyBinding
}

func renderStorage() (*storageAddon, error) {
	crds, err := api.CRDs()
	if err != nil {
		return nil, err
	}
	snapshotCRDs, err := csicontroller.SnapshotCRDs()
	if err != nil {
		return nil, err
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Labels: withManagedBy(nil)}
	}
	for _, crd := range append(crds, snapshotCRDs...) {
		crd.Labels = withManagedBy(crd.Labels)
		withRenderedHash(crd)
	}
	class := &storagev1.StorageClass{
		ObjectMeta:           meta(DefaultStorageClass),
		Provisioner:          csi.DriverName,
		ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		AllowVolumeExpansion: ptr.To(true),
	}
	class.Annotations = map[string]string{storageutil.IsDefaultStorageClassAnnotation: "true"}
	snapshotClass := &snapshotv1.VolumeSnapshotClass{
		TypeMeta:       metav1.TypeMeta{APIVersion: snapshotv1.SchemeGroupVersion.String(), Kind: "VolumeSnapshotClass"},
		ObjectMeta:     meta(DefaultStorageClass),
		Driver:         csi.DriverName,
		DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
	}
	snapshotClass.Annotations = map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}
	group := []string{api.Group}
	nodeRole := &rbacv1.ClusterRole{ObjectMeta: meta(csiNodeRole), Rules: []rbacv1.PolicyRule{
		rule(group, []string{"volumes", "snapshots"}, []string{"get", "list", "watch", "update", "patch"}),
		rule(group, []string{"volumes/status", "snapshots/status", "pools/status"}, []string{"update", "patch"}),
		rule(group, []string{"pools"}, []string{"get", "list", "watch", "create", "update", "patch"}),
	}}
	return &storageAddon{
		CRDs: append(crds, snapshotCRDs...),
		CSIDriver: withRenderedHash(&storagev1.CSIDriver{ObjectMeta: meta(csi.DriverName), Spec: storagev1.CSIDriverSpec{
			AttachRequired:       ptr.To(false),
			PodInfoOnMount:       ptr.To(true),
			FSGroupPolicy:        ptr.To(storagev1.FileFSGroupPolicy),
			StorageCapacity:      ptr.To(true),
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent, storagev1.VolumeLifecycleEphemeral},
		}}),
		StorageClass:  withRenderedHash(class),
		SnapshotClass: withRenderedHash(snapshotClass),
		NodeRole:      withRenderedHash(nodeRole),
		NodeBinding:   withRenderedHash(clusterRoleBinding(csiNodeRole, csiNodeRole, rbacv1.GroupKind, "system:nodes")),
		Policy:        withRenderedHash(nodeRestrictionPolicy()),
		PolicyBinding: withRenderedHash(&admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: meta(storageNodePolicy), Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        storageNodePolicy,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		}}),
	}, nil
}

// nodeRestrictionPolicy is NodeRestriction for our CRs: a node user may
// write only the Volumes and Snapshots whose spec.node is its own name, and
// its own Pool, and never changes a Volume's or Snapshot's spec.
func nodeRestrictionPolicy() *admissionv1.ValidatingAdmissionPolicy {
	resources := []string{"volumes", "volumes/status", "snapshots", "snapshots/status", "pools", "pools/status"}
	return &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: storageNodePolicy, Labels: withManagedBy(nil)},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update, admissionv1.Delete},
					Rule:       admissionv1.Rule{APIGroups: []string{api.Group}, APIVersions: []string{"*"}, Resources: resources, Scope: ptr.To(admissionv1.ClusterScope)},
				},
			}}},
			MatchConditions: []admissionv1.MatchCondition{{Name: "node-users", Expression: `request.userInfo.username.startsWith("system:node:")`}},
			Variables: []admissionv1.Variable{
				{Name: "node", Expression: `request.userInfo.username.substring(12)`},
				{Name: "current", Expression: `object != null ? object : oldObject`},
			},
			Validations: []admissionv1.Validation{
				{
					Expression: `request.resource.resource != "pools" || variables.current.metadata.name == variables.node`,
					Message:    "a node may write only the Pool named after itself",
				},
				{
					Expression: `request.resource.resource == "pools" || (oldObject != null && oldObject.spec.node == variables.node)`,
					Message:    "a node may write only the Volumes and Snapshots whose spec.node is its own name, and may not create them",
				},
				{
					Expression: `request.resource.resource == "pools" || object == null || oldObject == null || object.spec == oldObject.spec`,
					Message:    "a node may not change a Volume's or Snapshot's spec",
				},
			},
		},
	}
}

// ensureStorage writes the storage addon, each object only when its
// rendering changed since it was last written.
func ensureStorage(ctx context.Context, cfg *rest.Config) error {
	o, err := renderStorage()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	extensions, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	snapshots, err := snapshotclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, crd := range o.CRDs {
		if err := kubeapply.Ensure(ctx, extensions.ApiextensionsV1().CustomResourceDefinitions(), "CustomResourceDefinition", crd,
			syncRendered(func(dst, src *apiextensionsv1.CustomResourceDefinition) { dst.Spec = src.Spec })); err != nil {
			return err
		}
	}
	steps := []func() error{
		func() error {
			return kubeapply.Ensure(ctx, client.StorageV1().CSIDrivers(), "CSIDriver", o.CSIDriver,
				syncRendered(func(dst, src *storagev1.CSIDriver) {
					// attachRequired and podInfoOnMount are immutable: keep them.
					dst.Spec.FSGroupPolicy, dst.Spec.StorageCapacity, dst.Spec.VolumeLifecycleModes = src.Spec.FSGroupPolicy, src.Spec.StorageCapacity, src.Spec.VolumeLifecycleModes
				}))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.StorageV1().StorageClasses(), "StorageClass", o.StorageClass,
				syncRendered(func(dst, src *storagev1.StorageClass) { dst.AllowVolumeExpansion = src.AllowVolumeExpansion }))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.RbacV1().ClusterRoles(), "ClusterRole", o.NodeRole,
				syncRendered(func(dst, src *rbacv1.ClusterRole) { dst.Rules = src.Rules }))
		},
		func() error {
			return kubeapply.EnsureBinding(ctx, client.RbacV1().ClusterRoleBindings(), o.NodeBinding)
		},
		func() error {
			return kubeapply.Ensure(ctx, client.AdmissionregistrationV1().ValidatingAdmissionPolicies(), "ValidatingAdmissionPolicy", o.Policy,
				syncRendered(func(dst, src *admissionv1.ValidatingAdmissionPolicy) { dst.Spec = src.Spec }))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings(), "ValidatingAdmissionPolicyBinding", o.PolicyBinding,
				syncRendered(func(dst, src *admissionv1.ValidatingAdmissionPolicyBinding) { dst.Spec = src.Spec }))
		},
		func() error {
			// The class needs its CRD served, which follows its creation by a moment.
			return kubeapply.Ensure(ctx, snapshots.SnapshotV1().VolumeSnapshotClasses(), "VolumeSnapshotClass", o.SnapshotClass,
				syncRendered(func(dst, src *snapshotv1.VolumeSnapshotClass) { dst.DeletionPolicy = src.DeletionPolicy }))
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("storage addon: %w", err)
		}
	}
	return nil
}

// storageObjects writes the storage addon at start, as the CSI controller.
type storageObjects struct {
	config func() (*rest.Config, error)
}

func (s *storageObjects) Name() string               { return "storage objects" }
func (s *storageObjects) Init(context.Context) error { return nil }
func (s *storageObjects) Stop() error                { return nil }

func (s *storageObjects) Start(ctx context.Context) error {
	cfg, err := s.config()
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = ensureStorage(ctx, cfg)
		if last != nil {
			klog.V(2).InfoS("Retrying the storage objects", "err", last)
		}
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// storageComponents run the CSI driver's control-plane half, unless
// storage is turned off: its objects, then the controller.
func storageComponents(c *config.ControlPlane, paths Paths) []component.Component {
	if !c.StorageEnabled() {
		return nil
	}
	restConfig := func() (*rest.Config, error) {
		return clientcmd.BuildConfigFromFlags("", paths.Kubeconfig(pki.CSI))
	}
	return []component.Component{
		&storageObjects{config: restConfig},
		&csicontroller.Controller{Config: restConfig, Socket: paths.CSIControllerSocket(), Version: version.Version},
	}
}
