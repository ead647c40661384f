package joinserver

import (
	"context"
	"reflect"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

var (
	testCAPEM        = []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
	testServingCAPEM = []byte("-----BEGIN CERTIFICATE-----\nMQ==\n-----END CERTIFICATE-----\n")
)

func TestEnsureClusterObjects(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	if err := EnsureClusterObjects(ctx, client, "https://192.0.2.10:6443", testCAPEM, testServingCAPEM); err != nil {
		t.Fatal(err)
	}
	cm, err := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil || len(cfg.Clusters) != 1 || cfg.Clusters[""] == nil || cfg.Clusters[""].Server != "https://192.0.2.10:6443" ||
		string(cfg.Clusters[""].CertificateAuthorityData) != string(testCAPEM) || len(cfg.AuthInfos) != 0 {
		t.Fatalf("cluster-info kubeconfig %v: %+v", err, cfg)
	}
	want := map[string][2]string{ // binding -> role, subject
		BootstrapperBinding: {"system:node-bootstrapper", join.NodeBootstrapGroup},
		AutoRenewBinding:    {"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"},
		GetNodesRole:        {GetNodesRole, join.NodeBootstrapGroup},
	}
	for name, w := range want {
		crb, err := client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil || crb.RoleRef.Name != w[0] || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "Group" || crb.Subjects[0].Name != w[1] {
			t.Errorf("binding %s: %v %+v", name, err, crb)
		}
	}
	// No generic approval for join tokens: CSRApprover decides their CSRs.
	if _, err := client.RbacV1().ClusterRoleBindings().Get(ctx, RemovedAutoApproveBinding, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("binding %s: %v, want none", RemovedAutoApproveBinding, err)
	}
	servingCA, err := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "kubelet-serving-ca", metav1.GetOptions{})
	if err != nil || servingCA.Data["ca.crt"] != string(testServingCAPEM) {
		t.Errorf("kubelet-serving CA ConfigMap: %v %+v", err, servingCA)
	}
	caRole, err := client.RbacV1().Roles("kube-public").Get(ctx, KubeletServingCAReaderRole, metav1.GetOptions{})
	if err != nil || len(caRole.Rules) != 1 || !reflect.DeepEqual(caRole.Rules[0].ResourceNames, []string{"kubelet-serving-ca"}) || !reflect.DeepEqual(caRole.Rules[0].Verbs, []string{"get"}) {
		t.Errorf("kubelet-serving CA reader role: %v %+v", err, caRole)
	}
	caBinding, err := client.RbacV1().RoleBindings("kube-public").Get(ctx, KubeletServingCAReaderRole, metav1.GetOptions{})
	if err != nil || len(caBinding.Subjects) != 2 || caBinding.Subjects[0].Name != "system:nodes" || caBinding.Subjects[1].Name != join.NodeBootstrapGroup {
		t.Errorf("kubelet-serving CA reader binding: %v %+v", err, caBinding)
	}

	role, err := client.RbacV1().Roles("kube-public").Get(ctx, ClusterInfoReaderRole, metav1.GetOptions{})
	if err != nil || len(role.Rules) != 1 || role.Rules[0].ResourceNames[0] != "cluster-info" || len(role.Rules[0].Verbs) != 1 || role.Rules[0].Verbs[0] != "get" {
		t.Fatalf("cluster-info role: %v %+v", err, role)
	}
	rb, err := client.RbacV1().RoleBindings("kube-public").Get(ctx, ClusterInfoReaderRole, metav1.GetOptions{})
	if err != nil || rb.Subjects[0].Name != "system:anonymous" || rb.Subjects[0].Kind != "User" {
		t.Fatalf("cluster-info role binding: %v %+v", err, rb)
	}

	// Repair: broken subjects, a changed roleRef, a moved server, a rotated
	// kubelet-serving CA; the binding of earlier releases goes. The
	// bootstrapsigner's signatures stay.
	crb, _ := client.RbacV1().ClusterRoleBindings().Get(ctx, BootstrapperBinding, metav1.GetOptions{})
	crb.Subjects = []rbacv1.Subject{{Kind: "Group", Name: "system:authenticated"}}
	client.RbacV1().ClusterRoleBindings().Update(ctx, crb, metav1.UpdateOptions{})
	client.RbacV1().ClusterRoleBindings().Create(ctx, clusterRoleBinding(RemovedAutoApproveBinding, "system:certificates.k8s.io:certificatesigningrequests:nodeclient", join.NodeBootstrapGroup), metav1.CreateOptions{})
	rb.RoleRef.Name = "something-else"
	client.RbacV1().RoleBindings("kube-public").Delete(ctx, rb.Name, metav1.DeleteOptions{})
	client.RbacV1().RoleBindings("kube-public").Create(ctx, rb, metav1.CreateOptions{})
	cm.Data["jws-kubeconfig-abcdef"] = "sig"
	client.CoreV1().ConfigMaps("kube-public").Update(ctx, cm, metav1.UpdateOptions{})
	rotated := []byte("-----BEGIN CERTIFICATE-----\nMg==\n-----END CERTIFICATE-----\n")
	if err := EnsureClusterObjects(ctx, client, "https://192.0.2.11:6443", testCAPEM, rotated); err != nil {
		t.Fatal(err)
	}
	crb, _ = client.RbacV1().ClusterRoleBindings().Get(ctx, BootstrapperBinding, metav1.GetOptions{})
	if len(crb.Subjects) != 1 || crb.Subjects[0].Name != join.NodeBootstrapGroup {
		t.Errorf("subjects not repaired: %+v", crb.Subjects)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Get(ctx, RemovedAutoApproveBinding, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("binding %s of an earlier release left: %v", RemovedAutoApproveBinding, err)
	}
	if servingCA, _ := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "kubelet-serving-ca", metav1.GetOptions{}); servingCA.Data["ca.crt"] != string(rotated) {
		t.Errorf("kubelet-serving CA not updated: %v", servingCA.Data)
	}
	rb, _ = client.RbacV1().RoleBindings("kube-public").Get(ctx, ClusterInfoReaderRole, metav1.GetOptions{})
	if rb.RoleRef.Name != ClusterInfoReaderRole {
		t.Errorf("roleRef not repaired: %+v", rb.RoleRef)
	}
	cm, _ = client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if cfg, _ := clientcmd.Load([]byte(cm.Data["kubeconfig"])); cfg.Clusters[""].Server != "https://192.0.2.11:6443" || cm.Data["jws-kubeconfig-abcdef"] != "sig" {
		t.Errorf("cluster-info after the server moved: %v", cm.Data)
	}
}

func TestEnsureClusterObjectsIsIdempotent(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	for i := 0; i < 2; i++ {
		if err := EnsureClusterObjects(ctx, client, "https://192.0.2.10:6443", testCAPEM, testServingCAPEM); err != nil {
			t.Fatal(err)
		}
	}
	client.ClearActions()
	if err := EnsureClusterObjects(ctx, client, "https://192.0.2.10:6443", testCAPEM, testServingCAPEM); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" || a.GetVerb() == "delete" {
			t.Errorf("unchanged objects rewritten: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}
