package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

const controlPlaneRole = "node-role.kubernetes.io/control-plane"

// TestNodeRuntimeObjects: what the control plane gives nodes (settings,
// kube-proxy's rights, CoreDNS) and its own host (joinNode: credentials
// written into the temp dirs, the control-plane role), and that a restart
// neither rewrites nor churns any of it.
func TestNodeRuntimeObjects(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	ctx := context.Background()
	admin := cp.client()
	want, errs := config.Resolve(cp.configFile, true, nil, config.DetectAdvertiseAddress)
	if len(errs) > 0 {
		t.Fatal(errs)
	}

	// The node settings: what the config says, readable by nodes and by
	// joining nodes' bootstrap tokens, by no one else, and nothing more.
	cm, err := admin.CoreV1().ConfigMaps("kube-system").Get(ctx, config.ClusterSettingsName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	settings, err := config.ParseClusterSettings(cm.Data[config.ClusterSettingsKey])
	if err != nil || !reflect.DeepEqual(settings, want.ClusterSettings()) {
		t.Fatalf("published settings %+v (%v), want %+v", settings, err, want.ClusterSettings())
	}
	node := certClient(t, cp, "system:node:some-node", "system:nodes")
	stranger := certClient(t, cp, "alice", "developers")
	bootstrapper := bootstrapTokenClient(t, cp, admin)
	for name, client := range map[string]kubernetes.Interface{"node": node, "bootstrap token": bootstrapper} {
		if _, err := client.CoreV1().ConfigMaps("kube-system").Get(ctx, config.ClusterSettingsName, metav1.GetOptions{}); err != nil {
			t.Errorf("%s cannot read the node settings: %v", name, err)
		}
		if _, err := client.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("%s may read another kube-system ConfigMap: %v", name, err)
		}
	}
	if _, err := stranger.CoreV1().ConfigMaps("kube-system").Get(ctx, config.ClusterSettingsName, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("an unrelated user may read the node settings: %v", err)
	}
	// kube-proxy runs with the node's credential: it must list Services.
	if _, err := node.CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("a node cannot list Services for kube-proxy: %v", err)
	}

	checkCoreDNS(t, admin, want.Network.ClusterDNS)

	// joinNode: this host's node files, in the temp dirs, authenticating as its node.
	nodeName := localNodeName(t)
	files := checkLocalNodeFiles(t, cp, nodeName)
	checkControlPlaneRole(t, admin, nodeName)

	// A user's scale survives restarts (ours wins only when our rendering changes).
	if _, err := admin.AppsV1().Deployments("kube-system").UpdateScale(ctx, "coredns",
		&autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"}, Spec: autoscalingv1.ScaleSpec{Replicas: 1}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before, filesBefore := addonVersions(t, admin), fileStates(t, files)
	cp.stop()
	cp.start()
	after := addonVersions(t, admin)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("restart changed objects:\nbefore %v\nafter  %v", before, after)
	}
	if d, _ := admin.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); d == nil || *d.Spec.Replicas != 1 {
		t.Errorf("restart did not keep the user's replica count")
	}
	if filesAfter := fileStates(t, files); !slices.Equal(filesBefore, filesAfter) {
		t.Errorf("restart rewrote the local node's files:\nbefore %v\nafter  %v", filesBefore, filesAfter)
	}
	if pems, _ := filepath.Glob(filepath.Join(cp.localNodeDataDir, "pki", "kubelet-client-2*.pem")); len(pems) != 1 {
		t.Errorf("restart issued another certificate: %v", pems)
	}
	cp.stop()
}

// TestJoinNodeOff: --join-node=false writes no node files.
func TestJoinNodeOff(t *testing.T) {
	cp := newControlPlane(t, "--join-node=false")
	cp.start()
	for _, p := range []string{cp.localNodeConfig, cp.localNodeDataDir, cp.unitDir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists with --join-node=false: %v", p, err)
		}
	}
	// Nodes that join still get their settings and DNS.
	checkCoreDNS(t, cp.client(), "10.96.0.10")
	cp.stop()
}

func localNodeName(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(h)
}

func checkCoreDNS(t *testing.T, admin kubernetes.Interface, clusterDNS string) {
	t.Helper()
	ctx := context.Background()
	sys := "kube-system"
	d, err := admin.AppsV1().Deployments(sys).Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Labels["k8s-app"] != "kube-dns" || d.Spec.Template.Labels["k8s-app"] != "kube-dns" || d.Spec.Template.Spec.Containers[0].Image != config.CoreDNSImage {
		t.Errorf("Deployment coredns: labels %v, image %s", d.Labels, d.Spec.Template.Spec.Containers[0].Image)
	}
	svc, err := admin.CoreV1().Services(sys).Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != clusterDNS || svc.Labels["k8s-app"] != "kube-dns" || svc.Labels["kubernetes.io/name"] != "CoreDNS" || len(svc.Spec.Ports) != 3 {
		t.Errorf("Service kube-dns: clusterIP %s (want %s), labels %v, ports %v", svc.Spec.ClusterIP, clusterDNS, svc.Labels, svc.Spec.Ports)
	}
	pdb, err := admin.PolicyV1().PodDisruptionBudgets(sys).Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.Selector.MatchLabels["k8s-app"] != "kube-dns" {
		t.Errorf("PodDisruptionBudget coredns: %v %+v", err, pdb)
	}
	cm, err := admin.CoreV1().ConfigMaps(sys).Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["Corefile"], "kubernetes cluster.local in-addr.arpa ip6.arpa") {
		t.Errorf("ConfigMap coredns: %v %v", err, cm)
	}
	if _, err := admin.CoreV1().ServiceAccounts(sys).Get(ctx, "coredns", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if crb, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, "system:coredns", metav1.GetOptions{}); err != nil || crb.Subjects[0].Name != "coredns" {
		t.Errorf("ClusterRoleBinding system:coredns: %v", err)
	}
	// The CoreDNS service account may read what the kubernetes plugin watches.
	review, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sarFor("system:serviceaccount:kube-system:coredns", "list", "discovery.k8s.io", "endpointslices"), metav1.CreateOptions{})
	if err != nil || !review.Status.Allowed {
		t.Errorf("coredns may not list endpointslices: %v %+v", err, review)
	}
}

// checkLocalNodeFiles checks the files joinNode wrote and returns their
// paths with mode and modification time.
func checkLocalNodeFiles(t *testing.T, cp *controlPlane, nodeName string) []string {
	t.Helper()
	n, err := config.LoadNode(cp.localNodeConfig, false)
	if err != nil {
		t.Fatal(err)
	}
	config.SetNodeDefaults(n, nil)
	if errs := n.Validate(); len(errs) > 0 || n.NodeName != nodeName || n.DataDir != cp.localNodeDataDir || n.Server != fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort) {
		t.Fatalf("local node config %+v %v", n, errs)
	}
	pems, _ := filepath.Glob(filepath.Join(n.PKIDir(), "kubelet-client-2*.pem"))
	if len(pems) != 1 {
		t.Fatalf("kubelet client pairs %v", pems)
	}
	modes := map[string]os.FileMode{pems[0]: 0o600, n.KubeletKubeconfig(): 0o600, n.CAFile(): 0o644,
		cp.localNodeConfig: 0o644, filepath.Join(cp.unitDir, "node-agent.service"): 0o600}
	for p, want := range modes {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
	if unit, _ := os.ReadFile(filepath.Join(cp.unitDir, "node-agent.service")); !strings.Contains(string(unit), "ExecStart=/usr/local/bin/node-agent run") {
		t.Errorf("node-agent.service: %s", unit)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", n.KubeletKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	review, err := mustClient(t, cfg).AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != "system:node:"+nodeName || !slices.Contains(review.Status.UserInfo.Groups, "system:nodes") {
		t.Fatalf("the local kubelet kubeconfig does not authenticate as system:node:%s: %v %+v", nodeName, err, review)
	}
	return []string{pems[0], n.KubeletKubeconfig(), n.CAFile(), cp.localNodeConfig, n.KubeletClientCertFile()}
}

// fileStates returns "path mode mtime" of each file.
func fileStates(t *testing.T, files []string) []string {
	var out []string
	for _, f := range files {
		fi, err := os.Lstat(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %v %s", f, fi.Mode(), fi.ModTime().Format(time.RFC3339Nano)))
	}
	return out
}

// checkControlPlaneRole registers this host's Node (as its kubelet would)
// and checks the role label, and the taint only while another node exists.
func checkControlPlaneRole(t *testing.T, admin kubernetes.Interface, nodeName string) {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRole := func(what string, tainted bool) {
		t.Helper()
		mustPoll(t, 30*time.Second, what, func(ctx context.Context) error {
			n, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, labelled := n.Labels[controlPlaneRole]
			has := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
				return t.Key == controlPlaneRole && t.Effect == corev1.TaintEffectNoSchedule
			})
			if !labelled || has != tainted {
				return fmt.Errorf("labels %v taints %v", n.Labels, n.Spec.Taints)
			}
			return nil
		})
	}
	waitRole("the lone control-plane node: labelled, not tainted", false)
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRole("with a worker: tainted", true)
	if err := admin.CoreV1().Nodes().Delete(ctx, "worker-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRole("alone again: untainted", false)
}

// addonVersions lists the resourceVersion of every object the control plane
// writes for nodes and CoreDNS (generation for those whose status controllers update).
func addonVersions(t *testing.T, admin kubernetes.Interface) []string {
	t.Helper()
	ctx := context.Background()
	sys := "kube-system"
	var out []string
	add := func(kind string, o metav1.Object, err error, field string) {
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		v := o.GetResourceVersion()
		if field == "generation" {
			v = fmt.Sprint(o.GetGeneration())
		}
		out = append(out, fmt.Sprintf("%s/%s %s=%s", kind, o.GetName(), field, v))
	}
	cm, err := admin.CoreV1().ConfigMaps(sys).Get(ctx, config.ClusterSettingsName, metav1.GetOptions{})
	add("ConfigMap", cm, err, "rv")
	role, err := admin.RbacV1().Roles(sys).Get(ctx, "vcluster-standalone:node-agent-config-reader", metav1.GetOptions{})
	add("Role", role, err, "rv")
	rb, err := admin.RbacV1().RoleBindings(sys).Get(ctx, "vcluster-standalone:node-agent-config-reader", metav1.GetOptions{})
	add("RoleBinding", rb, err, "rv")
	proxier, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, "vcluster-standalone:node-proxier", metav1.GetOptions{})
	add("ClusterRoleBinding", proxier, err, "rv")
	sa, err := admin.CoreV1().ServiceAccounts(sys).Get(ctx, "coredns", metav1.GetOptions{})
	add("ServiceAccount", sa, err, "rv")
	cr, err := admin.RbacV1().ClusterRoles().Get(ctx, "system:coredns", metav1.GetOptions{})
	add("ClusterRole", cr, err, "rv")
	crb, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, "system:coredns", metav1.GetOptions{})
	add("ClusterRoleBinding", crb, err, "rv")
	corefile, err := admin.CoreV1().ConfigMaps(sys).Get(ctx, "coredns", metav1.GetOptions{})
	add("ConfigMap", corefile, err, "rv")
	svc, err := admin.CoreV1().Services(sys).Get(ctx, "kube-dns", metav1.GetOptions{})
	add("Service", svc, err, "rv")
	d, err := admin.AppsV1().Deployments(sys).Get(ctx, "coredns", metav1.GetOptions{})
	add("Deployment", d, err, "generation")
	pdb, err := admin.PolicyV1().PodDisruptionBudgets(sys).Get(ctx, "coredns", metav1.GetOptions{})
	add("PodDisruptionBudget", pdb, err, "generation")
	return out
}

// bootstrapTokenClient creates a node bootstrap token (as `token create`
// does) and returns a client that authenticates with it.
func bootstrapTokenClient(t *testing.T, cp *controlPlane, admin kubernetes.Interface) kubernetes.Interface {
	t.Helper()
	token, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := strings.Cut(token, ".")
	_, err = admin.CoreV1().Secrets("kube-system").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(id)},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenIDKey: id, bootstrapapi.BootstrapTokenSecretKey: secret,
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:      njBootstrapGroup,
			bootstrapapi.BootstrapTokenExpirationKey:       time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return mustClient(t, &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(cp.dataDir, "pki", "ca.crt")}})
}

func sarFor(user, verb, group, resource string) *authorizationv1.SubjectAccessReview {
	return &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource},
	}}
}
