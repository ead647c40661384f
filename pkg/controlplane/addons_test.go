package controlplane

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func TestCorefile(t *testing.T) {
	got := corefile("corp.example")
	for _, want := range []string{
		".:53 {", "errors", "health {\n       lameduck 5s\n    }", "ready",
		"kubernetes corp.example in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa",
		"prometheus :9153", "forward . /etc/resolv.conf", "cache 30", "disable success corp.example",
		"loop", "reload", "loadbalance",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "cluster.local") || strings.Contains(got, "DOMAIN") {
		t.Errorf("Corefile must name only the configured domain:\n%s", got)
	}
	if strings.Count(got, "{") != strings.Count(got, "}") {
		t.Errorf("unbalanced braces:\n%s", got)
	}
}

func TestCoreDNSDeploymentIsKubeadms(t *testing.T) {
	d := renderCoreDNS(testConfig()).Deployment
	if d.Name != "coredns" || d.Namespace != "kube-system" || d.Labels["k8s-app"] != "kube-dns" {
		t.Fatalf("metadata %+v", d.ObjectMeta)
	}
	if *d.Spec.Replicas != 2 || d.Spec.Selector.MatchLabels["k8s-app"] != "kube-dns" || d.Spec.Template.Labels["k8s-app"] != "kube-dns" {
		t.Errorf("replicas/selector: %d %v %v", *d.Spec.Replicas, d.Spec.Selector, d.Spec.Template.Labels)
	}
	if mu := d.Spec.Strategy.RollingUpdate.MaxUnavailable; *mu != intstr.FromInt32(1) {
		t.Errorf("maxUnavailable %v", mu)
	}
	pod := d.Spec.Template.Spec
	if pod.PriorityClassName != "system-cluster-critical" || pod.ServiceAccountName != "coredns" || pod.DNSPolicy != corev1.DNSDefault {
		t.Errorf("pod spec: priority %q sa %q dns %q", pod.PriorityClassName, pod.ServiceAccountName, pod.DNSPolicy)
	}
	wantTolerations := []corev1.Toleration{
		{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
		{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule},
	}
	if !slices.Equal(pod.Tolerations, wantTolerations) {
		t.Errorf("tolerations %v", pod.Tolerations)
	}
	// Every toleration must tolerate the taint nodeRole sets.
	if !pod.Tolerations[1].ToleratesTaint(klog.Background(), &controlPlaneTaint, false) {
		t.Error("CoreDNS does not tolerate the control-plane taint")
	}
	anti := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(anti) != 1 || anti[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" ||
		anti[0].PodAffinityTerm.LabelSelector.MatchExpressions[0].Values[0] != "kube-dns" {
		t.Errorf("anti-affinity %+v", anti)
	}
	c := pod.Containers[0]
	if c.Image != config.CoreDNSImage || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/ready" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 8181 ||
		c.LivenessProbe.HTTPGet.Path != "/health" || c.LivenessProbe.HTTPGet.Port.IntValue() != 8080 {
		t.Errorf("probes %+v %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	sc := c.SecurityContext
	if *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}) {
		t.Errorf("security context %+v", sc)
	}
	if c.Resources.Requests.Cpu().String() != "100m" || c.Resources.Requests.Memory().String() != "70Mi" ||
		c.Resources.Limits.Memory().String() != "170Mi" || c.Resources.Limits.Cpu().String() != "0" {
		t.Errorf("resources %+v", c.Resources)
	}
	if pod.Volumes[0].ConfigMap.Name != "coredns" || c.VolumeMounts[0].MountPath != "/etc/coredns" || !slices.Equal(c.Args, []string{"-conf", "/etc/coredns/Corefile"}) {
		t.Errorf("config volume %+v %+v %v", pod.Volumes, c.VolumeMounts, c.Args)
	}
}

func TestCoreDNSServiceAtClusterDNS(t *testing.T) {
	c := testConfig()
	c.Network.ClusterDNS = "10.96.0.53"
	o := renderCoreDNS(c)
	s := o.Service
	if s.Name != "kube-dns" || s.Spec.ClusterIP != "10.96.0.53" || s.Labels["k8s-app"] != "kube-dns" || s.Labels["kubernetes.io/name"] != "CoreDNS" {
		t.Fatalf("service %+v", s)
	}
	var ports []string
	for _, p := range s.Spec.Ports {
		ports = append(ports, p.Name+"/"+string(p.Protocol)+"/"+p.TargetPort.String())
	}
	if !slices.Equal(ports, []string{"dns/UDP/53", "dns-tcp/TCP/53", "metrics/TCP/9153"}) {
		t.Errorf("ports %v", ports)
	}
	if o.PDB.Spec.MaxUnavailable.IntValue() != 1 || o.PDB.Spec.Selector.MatchLabels["k8s-app"] != "kube-dns" {
		t.Errorf("pdb %+v", o.PDB.Spec)
	}
	if o.ClusterRoleBinding.Subjects[0].Name != "coredns" || o.ClusterRoleBinding.RoleRef.Name != "system:coredns" {
		t.Errorf("binding %+v", o.ClusterRoleBinding)
	}
}

func TestRenderedHashFollowsTheRendering(t *testing.T) {
	a, b := renderCoreDNS(testConfig()), renderCoreDNS(testConfig())
	hash := func(o metav1.Object) string { return o.GetAnnotations()[renderedHashAnnotation] }
	if hash(a.Deployment) == "" || hash(a.Deployment) != hash(b.Deployment) || hash(a.ConfigMap) != hash(b.ConfigMap) {
		t.Fatal("the same config must render the same hash")
	}
	other := testConfig()
	other.Network.ClusterDomain = "corp.example"
	if c := renderCoreDNS(other); hash(c.ConfigMap) == hash(a.ConfigMap) || hash(c.Deployment) != hash(a.Deployment) {
		t.Error("a new cluster domain must change the ConfigMap's hash and only that")
	}

	// Unchanged hash: the user's replica count stays; changed: ours wins.
	sync := syncRendered(func(dst, src *corev1.ConfigMap) { dst.Data = src.Data })
	got := a.ConfigMap.DeepCopy()
	got.Data["Corefile"] = "edited"
	if sync(got, b.ConfigMap) || got.Data["Corefile"] != "edited" {
		t.Error("same rendering: nothing may be updated")
	}
	if !sync(got, renderCoreDNS(other).ConfigMap) || !strings.Contains(got.Data["Corefile"], "corp.example") {
		t.Error("new rendering: ours must replace the content")
	}
}

func TestNodeSettingsObjects(t *testing.T) {
	c := testConfig()
	cm, role, binding, proxier, err := nodeSettingsObjects(c)
	if err != nil {
		t.Fatal(err)
	}
	s, err := config.ParseClusterSettings(cm.Data[config.ClusterSettingsKey])
	if err != nil || !reflect.DeepEqual(s, c.ClusterSettings()) {
		t.Fatalf("settings %+v %v", s, err)
	}
	if cm.Namespace != "kube-system" || cm.Name != "node-agent-config" {
		t.Errorf("configmap %s/%s", cm.Namespace, cm.Name)
	}
	r := role.Rules[0]
	if !slices.Equal(r.Verbs, []string{"get"}) || !slices.Equal(r.ResourceNames, []string{"node-agent-config"}) || !slices.Equal(r.Resources, []string{"configmaps"}) {
		t.Errorf("role may grant more than get of the one ConfigMap: %+v", r)
	}
	var groups []string
	for _, s := range binding.Subjects {
		groups = append(groups, s.Kind+":"+s.Name)
	}
	if !slices.Equal(groups, []string{"Group:system:nodes", "Group:system:bootstrappers:vcluster-standalone:default-node-token"}) {
		t.Errorf("subjects %v", groups)
	}
	if proxier.RoleRef.Name != "system:node-proxier" || proxier.Subjects[0].Name != "system:nodes" {
		t.Errorf("node-proxier binding %+v", proxier)
	}
}

func TestControlPlaneRoleDecision(t *testing.T) {
	other := corev1.Taint{Key: "example.com/gpu", Effect: corev1.TaintEffectNoSchedule}
	cases := []struct {
		name        string
		labels      map[string]string
		taints      []corev1.Taint
		otherNodes  bool
		wantChange  bool
		wantTainted bool
	}{
		{"new lone node: label, no taint", nil, nil, false, true, false},
		{"new node among others: label and taint", nil, nil, true, true, true},
		{"lone node in place", map[string]string{controlPlaneRole: ""}, nil, false, false, false},
		{"tainted in place", map[string]string{controlPlaneRole: ""}, []corev1.Taint{controlPlaneTaint}, true, false, true},
		{"others left: untaint", map[string]string{controlPlaneRole: ""}, []corev1.Taint{other, controlPlaneTaint}, false, true, false},
		{"others joined: taint, keep foreign taints", map[string]string{controlPlaneRole: "", "a": "b"}, []corev1.Taint{other}, true, true, true},
		{"label removed by a user comes back", nil, []corev1.Taint{controlPlaneTaint}, true, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp", Labels: tc.labels}, Spec: corev1.NodeSpec{Taints: tc.taints}}
			before := node.DeepCopy()
			got := withControlPlaneRole(node, tc.otherNodes)
			if (got != nil) != tc.wantChange {
				t.Fatalf("changed = %v, want %v", got != nil, tc.wantChange)
			}
			if got == nil {
				return
			}
			if _, ok := got.Labels[controlPlaneRole]; !ok {
				t.Error("no role label")
			}
			if slices.ContainsFunc(got.Spec.Taints, isControlPlaneTaint) != tc.wantTainted {
				t.Errorf("taints %v, want tainted=%v", got.Spec.Taints, tc.wantTainted)
			}
			if slices.ContainsFunc(tc.taints, func(t corev1.Taint) bool { return t == other }) && !slices.Contains(got.Spec.Taints, other) {
				t.Error("a foreign taint was dropped")
			}
			if tc.labels["a"] == "b" && got.Labels["a"] != "b" {
				t.Error("a foreign label was dropped")
			}
			if withControlPlaneRole(got, tc.otherNodes) != nil {
				t.Error("not idempotent: a second pass changes the node again")
			}
			if node.Labels[controlPlaneRole] != before.Labels[controlPlaneRole] || len(node.Spec.Taints) != len(before.Spec.Taints) {
				t.Error("the informer's object was modified")
			}
		})
	}
}

func TestNodeRoleStopIsSafeInAnyState(t *testing.T) {
	r := &nodeRole{}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
}
