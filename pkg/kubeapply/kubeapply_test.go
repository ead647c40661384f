package kubeapply

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var syncData = SyncField(func(o *corev1.ConfigMap) *map[string]string { return &o.Data })

func configMap(data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "kube-system"}, Data: data}
}

// writes lists the verbs of the client's actions other than get.
func writes(client *fake.Clientset) []string {
	var verbs []string
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			verbs = append(verbs, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return verbs
}

func TestEnsure(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	api := client.CoreV1().ConfigMaps("kube-system")

	// Missing: created.
	if err := Ensure(ctx, api, "ConfigMap", configMap(map[string]string{"a": "1"}), syncData); err != nil {
		t.Fatal(err)
	}
	if got := writes(client); len(got) != 1 || got[0] != "create configmaps" {
		t.Fatalf("first ensure wrote %v, want one create", got)
	}

	// In place: nothing written.
	client.ClearActions()
	if err := Ensure(ctx, api, "ConfigMap", configMap(map[string]string{"a": "1"}), syncData); err != nil {
		t.Fatal(err)
	}
	if got := writes(client); len(got) != 0 {
		t.Fatalf("unchanged object rewritten: %v", got)
	}

	// Changed: updated, other metadata kept.
	cm, _ := api.Get(ctx, "settings", metav1.GetOptions{})
	cm.Labels = map[string]string{"user": "label"}
	cm.Data = map[string]string{"a": "edited"}
	if _, err := api.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	if err := Ensure(ctx, api, "ConfigMap", configMap(map[string]string{"a": "1"}), syncData); err != nil {
		t.Fatal(err)
	}
	if got := writes(client); len(got) != 1 || got[0] != "update configmaps" {
		t.Fatalf("changed object: wrote %v, want one update", got)
	}
	cm, _ = api.Get(ctx, "settings", metav1.GetOptions{})
	if cm.Data["a"] != "1" || cm.Labels["user"] != "label" {
		t.Errorf("after the update: %+v", cm)
	}
}

func TestEnsureErrors(t *testing.T) {
	ctx := context.Background()
	for _, verb := range []string{"get", "create", "update"} {
		client := fake.NewClientset()
		if verb == "update" {
			client = fake.NewClientset(configMap(map[string]string{"a": "old"}))
		}
		client.PrependReactor(verb, "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("boom")
		})
		err := Ensure(ctx, client.CoreV1().ConfigMaps("kube-system"), "ConfigMap", configMap(map[string]string{"a": "1"}), syncData)
		want := map[string]string{"get": "read", "create": "create", "update": "update"}[verb]
		if err == nil || err.Error() != "failed to "+want+" ConfigMap kube-system/settings: boom" {
			t.Errorf("%s failing: %v", verb, err)
		}
	}
}

func TestSyncField(t *testing.T) {
	got, want := configMap(map[string]string{"a": "1", "b": "2"}), configMap(map[string]string{"a": "1"})
	if !syncData(got, want) || len(got.Data) != 1 || got.Data["a"] != "1" {
		t.Errorf("field not restored: %v", got.Data)
	}
	if syncData(got, want) {
		t.Error("equal field reported as changed")
	}
}

func clusterRoleBinding(role string, subjects ...string) *rbacv1.ClusterRoleBinding {
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "grant", Labels: map[string]string{"app.kubernetes.io/managed-by": "vcluster-standalone"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
	}
	for _, s := range subjects {
		b.Subjects = append(b.Subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: s})
	}
	return b
}

func TestEnsureBinding(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	api := client.RbacV1().ClusterRoleBindings()

	if err := EnsureBinding(ctx, api, clusterRoleBinding("view", "system:nodes")); err != nil {
		t.Fatal(err)
	}
	if got := writes(client); len(got) != 1 || got[0] != "create clusterrolebindings" {
		t.Fatalf("first ensure wrote %v, want one create", got)
	}

	client.ClearActions()
	if err := EnsureBinding(ctx, api, clusterRoleBinding("view", "system:nodes")); err != nil {
		t.Fatal(err)
	}
	if got := writes(client); len(got) != 0 {
		t.Fatalf("unchanged binding rewritten: %v", got)
	}

	// Other subjects: updated in place.
	client.ClearActions()
	if err := EnsureBinding(ctx, api, clusterRoleBinding("view", "system:nodes", "system:bootstrappers")); err != nil {
		t.Fatal(err)
	}
	if got := writes(client); len(got) != 1 || got[0] != "update clusterrolebindings" {
		t.Fatalf("changed subjects: wrote %v, want one update", got)
	}
	crb, _ := api.Get(ctx, "grant", metav1.GetOptions{})
	if len(crb.Subjects) != 2 {
		t.Errorf("subjects not restored: %+v", crb.Subjects)
	}

	// Another roleRef (immutable): deleted and created anew.
	client.ClearActions()
	if err := EnsureBinding(ctx, api, clusterRoleBinding("edit", "system:nodes")); err != nil {
		t.Fatal(err)
	}
	if got := writes(client); len(got) != 2 || got[0] != "delete clusterrolebindings" || got[1] != "create clusterrolebindings" {
		t.Fatalf("changed roleRef: wrote %v, want delete and create", got)
	}
	crb, _ = api.Get(ctx, "grant", metav1.GetOptions{})
	if crb.RoleRef.Name != "edit" || len(crb.Subjects) != 1 || crb.Subjects[0].Name != "system:nodes" {
		t.Errorf("binding not replaced: %+v", crb)
	}
}

func TestEnsureRoleBindingReplaceFails(t *testing.T) {
	ctx := context.Background()
	old := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: "kube-public"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "something-else"},
	}
	client := fake.NewClientset(old)
	client.PrependReactor("delete", "rolebindings", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("boom")
	})
	want := old.DeepCopy()
	want.RoleRef.Name = "reader"
	err := EnsureBinding(ctx, client.RbacV1().RoleBindings("kube-public"), want)
	if err == nil || !strings.HasPrefix(err.Error(), "failed to replace RoleBinding kube-public/reader: ") {
		t.Errorf("got %v", err)
	}
}
