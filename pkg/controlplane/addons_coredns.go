package controlplane

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/kubeapply"
)

// The cluster DNS addon: the objects, names and labels of kubeadm's CoreDNS
// addon, so manifests and tools written for kubeadm clusters find it.
const (
	coreDNSName        = "coredns"
	coreDNSServiceName = "kube-dns"
	coreDNSClusterRole = "system:coredns"
	coreDNSReplicas    = 2
	// controlPlaneRole is the node-role label and taint of control-plane nodes.
	controlPlaneRole = "node-role.kubernetes.io/control-plane"
)

// coreDNSLabels select the CoreDNS pods (k8s-app=kube-dns, as everywhere).
var coreDNSLabels = map[string]string{"k8s-app": "kube-dns"}

// corefile is CoreDNS's configuration for the cluster domain: cluster names
// from the API, everything else forwarded to the node's resolvers.
func corefile(clusterDomain string) string {
	return strings.ReplaceAll(`.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes DOMAIN in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success DOMAIN
       disable denial DOMAIN
    }
    loop
    reload
    loadbalance
}
`, "DOMAIN", clusterDomain)
}

// coreDNSObjects renders every CoreDNS object, each stamped with its
// rendered hash.
type coreDNSObjects struct {
	ServiceAccount     *corev1.ServiceAccount
	ClusterRole        *rbacv1.ClusterRole
	ClusterRoleBinding *rbacv1.ClusterRoleBinding
	ConfigMap          *corev1.ConfigMap
	Deployment         *appsv1.Deployment
	Service            *corev1.Service
	PDB                *policyv1.PodDisruptionBudget
}

func renderCoreDNS(c *config.ControlPlane) *coreDNSObjects {
	ns := metav1.NamespaceSystem
	meta := func(name, namespace string, labels map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: withManagedBy(labels)}
	}
	serviceLabels := mergeMaps(coreDNSLabels, map[string]string{"kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"})
	service := &corev1.Service{
		ObjectMeta: meta(coreDNSServiceName, ns, serviceLabels),
		Spec: corev1.ServiceSpec{
			ClusterIP: c.Network.ClusterDNS,
			Selector:  coreDNSLabels,
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
	service.Annotations = map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}
	return &coreDNSObjects{
		ServiceAccount: withRenderedHash(&corev1.ServiceAccount{ObjectMeta: meta(coreDNSName, ns, nil)}),
		ClusterRole: withRenderedHash(&rbacv1.ClusterRole{
			ObjectMeta: meta(coreDNSClusterRole, "", nil),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
			},
		}),
		ClusterRoleBinding: withRenderedHash(&rbacv1.ClusterRoleBinding{
			ObjectMeta: meta(coreDNSClusterRole, "", nil),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: coreDNSClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: coreDNSName, Namespace: ns}},
		}),
		ConfigMap: withRenderedHash(&corev1.ConfigMap{
			ObjectMeta: meta(coreDNSName, ns, nil),
			Data:       map[string]string{"Corefile": corefile(c.Network.ClusterDomain)},
		}),
		Deployment: withRenderedHash(coreDNSDeployment(config.CoreDNSImage)),
		Service:    withRenderedHash(service),
		PDB: withRenderedHash(&policyv1.PodDisruptionBudget{
			ObjectMeta: meta(coreDNSName, ns, coreDNSLabels),
			Spec: policyv1.PodDisruptionBudgetSpec{
				MaxUnavailable: ptr.To(intstr.FromInt32(1)),
				Selector:       &metav1.LabelSelector{MatchLabels: coreDNSLabels},
			},
		}),
	}
}

// coreDNSDeployment is kubeadm's CoreDNS Deployment, with our image.
func coreDNSDeployment(image string) *appsv1.Deployment {
	httpGet := func(path string, port int32) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTP}}
	}
	container := corev1.Container{
		Name:            coreDNSName,
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            []string{"-conf", "/etc/coredns/Corefile"},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("170Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("70Mi")},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns", ReadOnly: true}},
		Ports: []corev1.ContainerPort{
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler: httpGet("/health", 8080), InitialDelaySeconds: 60, TimeoutSeconds: 5, SuccessThreshold: 1, FailureThreshold: 5,
		},
		ReadinessProbe: &corev1.Probe{ProbeHandler: httpGet("/ready", 8181)},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem:   ptr.To(true),
		},
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: coreDNSName, Namespace: metav1.NamespaceSystem, Labels: withManagedBy(coreDNSLabels)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(coreDNSReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: coreDNSLabels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: coreDNSLabels},
				Spec: corev1.PodSpec{
					PriorityClassName:  "system-cluster-critical",
					ServiceAccountName: coreDNSName,
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
									Key: "k8s-app", Operator: metav1.LabelSelectorOpIn, Values: []string{"kube-dns"},
								}}},
								TopologyKey: corev1.LabelHostname,
							},
						}},
					}},
					Tolerations: []corev1.Toleration{
						{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
						{Key: controlPlaneRole, Effect: corev1.TaintEffectNoSchedule},
					},
					NodeSelector: map[string]string{corev1.LabelOSStable: "linux"},
					Containers:   []corev1.Container{container},
					// The node's resolvers, not the cluster DNS it serves.
					DNSPolicy: corev1.DNSDefault,
					Volumes: []corev1.Volume{{
						Name: "config-volume",
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: coreDNSName},
							Items:                []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}},
						}},
					}},
				},
			},
		},
	}
}

// ensureCoreDNS creates the CoreDNS addon, or updates each object whose
// rendering changed since it was last written (see renderedHashAnnotation).
// kubeadm overwrites its addon at every upgrade; we do the same, but only
// then, so e.g. a user's replica count survives plain restarts.
func ensureCoreDNS(ctx context.Context, client kubernetes.Interface, c *config.ControlPlane) error {
	o := renderCoreDNS(c)
	ns := metav1.NamespaceSystem
	steps := []func() error{
		func() error {
			return kubeapply.Ensure(ctx, client.CoreV1().ServiceAccounts(ns), "ServiceAccount", o.ServiceAccount,
				syncRendered(func(dst, src *corev1.ServiceAccount) {}))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.RbacV1().ClusterRoles(), "ClusterRole", o.ClusterRole,
				syncRendered(func(dst, src *rbacv1.ClusterRole) { dst.Rules = src.Rules }))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.RbacV1().ClusterRoleBindings(), "ClusterRoleBinding", o.ClusterRoleBinding,
				syncRendered(func(dst, src *rbacv1.ClusterRoleBinding) { dst.Subjects = src.Subjects }))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.CoreV1().ConfigMaps(ns), "ConfigMap", o.ConfigMap,
				syncRendered(func(dst, src *corev1.ConfigMap) { dst.Data = src.Data }))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.AppsV1().Deployments(ns), "Deployment", o.Deployment,
				syncRendered(func(dst, src *appsv1.Deployment) { dst.Spec = src.Spec }))
		},
		func() error {
			return replaceServiceWithOtherIP(ctx, client, o.Service)
		},
		func() error {
			return kubeapply.Ensure(ctx, client.CoreV1().Services(ns), "Service", o.Service,
				syncRendered(func(dst, src *corev1.Service) {
					// The cluster IP is immutable and already ours; keep what the
					// apiserver defaulted around it.
					dst.Spec.Ports, dst.Spec.Selector, dst.Spec.Type = src.Spec.Ports, src.Spec.Selector, corev1.ServiceTypeClusterIP
				}))
		},
		func() error {
			return kubeapply.Ensure(ctx, client.PolicyV1().PodDisruptionBudgets(ns), "PodDisruptionBudget", o.PDB,
				syncRendered(func(dst, src *policyv1.PodDisruptionBudget) { dst.Spec = src.Spec }))
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("CoreDNS addon: %w", err)
		}
	}
	return nil
}

// replaceServiceWithOtherIP deletes the Service when its cluster IP is not
// want's (network.clusterDNS changed): the IP is immutable, and nodes look
// for DNS at the configured address.
func replaceServiceWithOtherIP(ctx context.Context, client kubernetes.Interface, want *corev1.Service) error {
	api := client.CoreV1().Services(want.Namespace)
	got, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && got.Spec.ClusterIP == want.Spec.ClusterIP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read Service %s/%s: %w", want.Namespace, want.Name, err)
	}
	klog.InfoS("Recreating the cluster DNS Service at the configured address", "old", got.Spec.ClusterIP, "new", want.Spec.ClusterIP)
	err = api.Delete(ctx, want.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &got.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to replace Service %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}
