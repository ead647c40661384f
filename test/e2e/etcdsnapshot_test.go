//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// testSnapshotRestore (run from nodes_last_test.go, while the nodes are
// joined): a snapshot saved on lab-cp brings the cluster back after lab-cp
// is uninstalled (its data dir, config and binaries gone) and installed again
// with `install.sh --restore`: every ConfigMap, Secret (still encrypted at
// rest) and Deployment is back, the joined nodes are Ready again without
// re-joining (same node-agent process), and their pods never stopped.
func testSnapshotRestore(t *testing.T) {
	track(t)
	begin := time.Now()
	importBusybox(t, joinNodes...)
	cs := clientset(t)
	ns := testNamespace(t, cs, "snapshot")
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}, Data: map[string]string{"i": fmt.Sprint(i)}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const marker = "snapshot-e2e-plaintext-marker"
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, StringData: map[string]string{"v": marker}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := snapshotDeployment(t, cs, ns)
	agents := map[string]string{}
	for _, n := range joinNodes {
		agents[n] = agentPID(t, n)
	}
	before := clusterObjects(t, cs)

	// Save on lab-cp: progress and duration printed.
	r := inNode(t, cpNode, "vcluster-standalone", "snapshot", "save", "/root/e2e.snap")
	if r.code != 0 || !regexp.MustCompile(`saved /root/e2e.snap \([0-9.]+ [KMG]iB, \d+ files\) in [0-9.]+s`).MatchString(r.stderr) {
		t.Fatalf("snapshot save: %s", r)
	}
	t.Logf("snapshot save on %s: %s", cpNode, lastLine(r.stderr))

	// Lose the control plane: the uninstall script removes its data dir,
	// config, binaries and this host's own node.
	mustInNode(t, cpNode, "/usr/local/bin/vcluster-standalone-uninstall.sh")
	if r := inNode(t, cpNode, "test", "-e", "/var/lib/vcluster-standalone"); r.code == 0 {
		t.Fatalf("data dir left after uninstall")
	}

	// A truncated snapshot is refused in one line, before anything is installed.
	mustInNode(t, cpNode, "sh", "-c", "head -c $(($(stat -c %s /root/e2e.snap) / 2)) /root/e2e.snap > /root/truncated.snap")
	r = inNode(t, cpNode, "sh", installSh, "--binary-dir", binDir, "--restore", "/root/truncated.snap")
	if r.code == 0 || strings.Count(r.stderr, "\n") != 0 || !strings.Contains(r.stderr, "is corrupt or truncated") {
		t.Errorf("install.sh --restore of a truncated snapshot: want a one-line refusal: %s", r)
	}
	for _, p := range []string{"/usr/local/bin/vcluster-standalone", "/etc/vcluster-standalone/config.yaml", "/var/lib/vcluster-standalone/etcd"} {
		if r := inNode(t, cpNode, "test", "-e", p); r.code == 0 {
			t.Errorf("a refused restore left %s", p)
		}
	}

	restoreBegin := time.Now()
	r = inNode(t, cpNode, "sh", installSh, "--binary-dir", binDir, "--restore", "/root/e2e.snap", "--timeout", "180")
	if r.code != 0 {
		t.Fatalf("install.sh --restore: %s", r)
	}
	t.Logf("install.sh --restore to ready: %s", time.Since(restoreBegin).Round(100*time.Millisecond))

	after := clusterObjects(t, cs)
	for key, uid := range before {
		if after[key] != uid {
			t.Errorf("%s (uid %s) not back after the restore (now %q)", key, uid, after[key])
		}
	}
	// etcd's raw database: the Secret's key is followed by an encrypted value
	// (protobuf framing between them; newlines folded so grep sees one line,
	// and the C locale so that "." matches any byte).
	raw := mustInNode(t, cpNode, "sh", "-c", fmt.Sprintf("db=/var/lib/vcluster-standalone/etcd/member/snap/db; export LC_ALL=C; grep -a -c %q $db; tr '\\n' ' ' <$db | grep -a -o '/registry/secrets/%s/kept.\\{0,24\\}k8s:enc:[a-z]*:v1:' | head -n1 || true", marker, ns))
	if lines := strings.Split(raw, "\n"); lines[0] != "0" || len(lines) < 2 || !strings.Contains(lines[1], "k8s:enc:") {
		t.Errorf("restored Secret not encrypted at rest in etcd's database: %q", raw)
	}

	for _, n := range joinNodes {
		waitKubeletBack(t, cs, n, restoreBegin)
		if pid := agentPID(t, n); pid != agents[n] {
			t.Errorf("%s: node-agent PID %s -> %s: the node restarted or re-joined", n, agents[n], pid)
		}
	}
	waitKubeletBack(t, cs, cpNode, restoreBegin)
	for name, want := range pods {
		got := getPod(t, cs, ns, name)
		if state := podRunState(got); state != want {
			t.Errorf("pod %s: %s before the snapshot, %s after the restore", name, want, state)
		}
	}
	t.Logf("snapshot, uninstall, restore, nodes Ready: %s", time.Since(begin).Round(100*time.Millisecond))
}

// waitKubeletBack waits until node is Ready and its kubelet renewed its
// Lease in the restored cluster (a kubelet that keeps running posts its
// Ready condition only when it changes, its Lease every 10 s).
func waitKubeletBack(t *testing.T, cs kubernetes.Interface, node string, since time.Time) {
	t.Helper()
	poll(t, 90*time.Second, 500*time.Millisecond, "Node "+node+" Ready with a renewed Lease", func() (bool, string) {
		ok, why, _ := nodeReady(cs, node)
		if !ok {
			return false, why
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lease, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if r := lease.Spec.RenewTime; r == nil || r.Time.Before(since.Truncate(time.Second)) {
			return false, fmt.Sprintf("Lease renewed %v, before the restore", r)
		}
		return true, ""
	})
}

// snapshotDeployment runs a Deployment with one pod on each joined node and
// returns each pod's run state.
func snapshotDeployment(t *testing.T, cs kubernetes.Interface, ns string) map[string]string {
	t.Helper()
	labels := map[string]string{"app": "snapshot"}
	replicas := int32(len(joinNodes))
	zero := int64(0)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "snapshot"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &zero,
					Affinity: &corev1.Affinity{
						NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: joinNodes}}}},
						}},
						PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: labels}, TopologyKey: "kubernetes.io/hostname",
						}}},
					},
					Containers: []corev1.Container{{Name: "main", Image: busyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	poll(t, 90*time.Second, 500*time.Millisecond, "Deployment snapshot running on every joined node", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=snapshot"})
		if err != nil {
			return false, err.Error()
		}
		states = map[string]string{}
		for i := range list.Items {
			p := &list.Items[i]
			if p.Status.Phase != corev1.PodRunning || !podCondition(p, corev1.ContainersReady) {
				return false, podSummary(p)
			}
			states[p.Name] = podRunState(p)
		}
		return len(states) == len(joinNodes), fmt.Sprintf("%d of %d pods running", len(states), len(joinNodes))
	})
	return states
}

// podRunState identifies a pod's run: UID, node, container start and restarts.
func podRunState(p *corev1.Pod) string {
	s := fmt.Sprintf("uid %s on %s", p.UID, p.Spec.NodeName)
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil {
			return s + " not running"
		}
		s += fmt.Sprintf(", %s started %s, %d restarts", c.Name, c.State.Running.StartedAt.UTC().Format(time.RFC3339), c.RestartCount)
	}
	return s
}

// clusterObjects maps every ConfigMap, Secret and Deployment to its UID.
func clusterObjects(t *testing.T, cs kubernetes.Interface) map[string]types.UID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]types.UID{}
	cms, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms.Items {
		out["configmap "+o.Namespace+"/"+o.Name] = o.UID
	}
	secrets, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secrets.Items {
		// Bootstrap tokens expire and are cleaned up on their own.
		if o.Type != corev1.SecretTypeBootstrapToken {
			out["secret "+o.Namespace+"/"+o.Name] = o.UID
		}
	}
	deps, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range deps.Items {
		out["deployment "+o.Namespace+"/"+o.Name] = o.UID
	}
	return out
}
