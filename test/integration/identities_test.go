package integration

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
)

// TestControllerIdentities: the control plane's own controllers (CSR
// approver, join objects, addons) run as themselves, not as system:masters,
// and each can do what it needs and nothing broader.
func TestControllerIdentities(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	defer cp.stop()
	ctx := context.Background()

	type check struct {
		verb, group, resource, subresource, namespace, name string
		allowed                                             bool
	}
	for controller, checks := range map[string][]check{
		"csr-approver": {
			{"update", "certificates.k8s.io", "certificatesigningrequests", "approval", "", "", true},
			{"approve", "certificates.k8s.io", "signers", "", "", "kubernetes.io/kubelet-serving", true},
			{"approve", "certificates.k8s.io", "signers", "", "", "kubernetes.io/kube-apiserver-client", false},
			{"get", "", "secrets", "", "kube-system", "", false},
			{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", "", false},
		},
		"join-objects": {
			{"update", "", "configmaps", "", "kube-public", "cluster-info", true},
			{"update", "", "configmaps", "", "kube-system", "", false},
			{"update", "", "configmaps", "", "kube-system", "kube-root-ca.crt", true},
			{"get", "", "configmaps", "", "kube-system", "coredns", false},
			{"bind", "rbac.authorization.k8s.io", "clusterroles", "", "", "system:node-bootstrapper", true},
			{"bind", "rbac.authorization.k8s.io", "clusterroles", "", "", "cluster-admin", false},
			{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", "", false},
			{"list", "", "secrets", "", "", "", false},
		},
		"addons": {
			{"update", "apps", "deployments", "", "kube-system", "coredns", true},
			{"create", "apps", "deployments", "", "default", "", false},
			{"bind", "rbac.authorization.k8s.io", "clusterroles", "", "", "system:node-proxier", true},
			{"bind", "rbac.authorization.k8s.io", "clusterroles", "", "", "cluster-admin", false},
			{"get", "", "secrets", "", "kube-system", "", false},
			{"impersonate", "", "users", "", "", "", false},
		},
		"csi": {
			{"create", "", "persistentvolumes", "", "", "", true},
			{"patch", "", "persistentvolumeclaims", "status", "default", "", true},
			{"create", "storage.k8s.io", "csistoragecapacities", "", "kube-system", "", true},
			{"create", "storage.k8s.io", "csistoragecapacities", "", "default", "", false},
			{"update", "csi.vcluster-standalone.io", "volumes", "", "", "", true},
			{"get", "", "secrets", "", "kube-system", "", false},
			{"create", "", "pods", "", "default", "", false},
			{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", "", false},
		},
	} {
		kubeconfig := filepath.Join(cp.dataDir, "kubeconfig", controller+".conf")
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatalf("%s: %v", controller, err)
		}
		certs, err := certutil.ParseCertsPEM(cfg.CertData)
		if err != nil {
			if certs, err = certutil.CertsFromFile(cfg.CertFile); err != nil {
				t.Fatalf("%s: no client certificate: %v", controller, err)
			}
		}
		if slices.Contains(certs[0].Subject.Organization, "system:masters") || certs[0].Subject.CommonName != "vcluster-standalone:"+controller {
			t.Errorf("%s: certificate subject %s, want CN=vcluster-standalone:%s in no privileged group", controller, certs[0].Subject, controller)
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range checks {
			review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
				Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
					Verb: c.verb, Group: c.group, Resource: c.resource, Subresource: c.subresource, Namespace: c.namespace, Name: c.name,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("%s: %v", controller, err)
			}
			if review.Status.Allowed != c.allowed {
				t.Errorf("%s may %s %s/%s %s (ns %q, name %q): %v, want %v", controller, c.verb, c.group, c.resource, c.subresource, c.namespace, c.name, review.Status.Allowed, c.allowed)
			}
		}
	}
	// And they did their work as themselves: the objects they own exist.
	admin := cp.client()
	if _, err := admin.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{}); err != nil {
		t.Errorf("join objects: %v", err)
	}
	if _, err := admin.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); err != nil {
		t.Errorf("addons: %v", err)
	}
}
