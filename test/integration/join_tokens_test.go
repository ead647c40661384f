package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinserver"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// TestJoinTokens: token create/list/delete as a user runs them, the token
// authenticates in the bootstrap group, expired tokens stop working and are
// removed, and cluster-info is signed for each token and readable anonymously.
func TestJoinTokens(t *testing.T) {
	cp := newJoinControlPlane(t)
	cp.start()
	ctx := context.Background()
	admin := cp.client()

	tok := createToken(t, cp, "--description", "integration test")
	cas, err := certutil.CertsFromFile(cp.dataDir + "/pki/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	if tok.caHash != pki.CAPin(cas[0]) {
		t.Errorf("printed CA hash %s, want the cluster CA's %s", tok.caHash, pki.CAPin(cas[0]))
	}
	if !strings.HasSuffix(tok.server, fmt.Sprintf(":%d", cp.apiPort)) || !strings.HasSuffix(tok.endpoint, fmt.Sprintf(":%d", cp.joinPort)) {
		t.Errorf("join line server %s / endpoint %s do not use the API port %d / join port %d", tok.server, tok.endpoint, cp.apiPort, cp.joinPort)
	}
	secret, err := admin.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+tok.id, metav1.GetOptions{})
	if err != nil || secret.Type != "bootstrap.kubernetes.io/token" {
		t.Fatalf("token Secret: %v", err)
	}

	// --print-join-args: exactly install.sh's join flags, on one line, no quotes.
	out, stderr, err := cp.run("token", "create", "--print-join-args", "--ttl", "1h")
	if err != nil || !regexp.MustCompile(`^--join `+regexp.QuoteMeta(tok.server)+` --token [a-z0-9]{6}\.[a-z0-9]{16} --ca-cert-hash `+tok.caHash+"\n$").MatchString(out) {
		t.Fatalf("token create --print-join-args: %v %q %s", err, out, stderr)
	}

	// list shows ID, time left, usages, description; never a secret.
	out, stderr, err = cp.run("token", "list")
	if err != nil {
		t.Fatalf("token list: %v %s", err, stderr)
	}
	if !strings.Contains(out, tok.id) || !strings.Contains(out, "integration test") || !strings.Contains(out, "authentication,signing") || !regexp.MustCompile(`(23h59m|24h0m)\d+s`).MatchString(out) {
		t.Errorf("token list lacks the token's ID, description, usages or time left:\n%s", out)
	}
	if strings.Contains(out, tok.secret) || tokenRe.MatchString(out) || strings.Count(out, "\n") != 3 {
		t.Errorf("token list must show two tokens and no secret:\n%s", out)
	}

	// The token authenticates as a bootstrapper in the node-token group.
	review, err := bearerClient(t, cp, tok.token).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("bootstrap token does not authenticate: %v", err)
	}
	if u := review.Status.UserInfo; u.Username != "system:bootstrap:"+tok.id || !contains(u.Groups, join.NodeBootstrapGroup) {
		t.Errorf("token identity %s %v, want system:bootstrap:%s in %s", u.Username, u.Groups, tok.id, join.NodeBootstrapGroup)
	}

	// cluster-info: readable without credentials, pointing at this API
	// server with this CA, signed by bootstrapsigner for the token.
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var cm corev1.ConfigMap
	mustPoll(t, 30*time.Second, "cluster-info signed for the new token", func(context.Context) error {
		status, body := get(anon, cp.server()+"/api/v1/namespaces/kube-public/configmaps/cluster-info")
		if status != http.StatusOK {
			return fmt.Errorf("anonymous GET cluster-info: %d %s", status, body)
		}
		if err := json.Unmarshal([]byte(body), &cm); err != nil {
			return err
		}
		if _, ok := cm.Data["jws-kubeconfig-"+tok.id]; !ok {
			return fmt.Errorf("no jws-kubeconfig-%s in %v", tok.id, keys(cm.Data))
		}
		return nil
	})
	if !jws.DetachedTokenIsValid(cm.Data["jws-kubeconfig-"+tok.id], cm.Data["kubeconfig"], tok.id, tok.secret) {
		t.Error("the JWS signature of cluster-info does not verify with the token")
	}
	info, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil || len(info.Clusters) != 1 || len(info.AuthInfos) != 0 {
		t.Fatalf("cluster-info kubeconfig: %v %+v", err, info)
	}
	for _, cluster := range info.Clusters {
		if cluster.Server != tok.server {
			t.Errorf("cluster-info server %s, join line server %s", cluster.Server, tok.server)
		}
		if got, _ := certutil.ParseCertsPEM(cluster.CertificateAuthorityData); len(got) != 1 || pki.CAPin(got[0]) != tok.caHash {
			t.Error("cluster-info CA does not match the printed CA hash")
		}
	}
	// Nothing else in kube-public is readable anonymously.
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "kube-public"}}
	if _, err := admin.CoreV1().ConfigMaps("kube-public").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/namespaces/kube-public/configmaps/other", "/api/v1/namespaces/kube-public/configmaps", "/api/v1/namespaces/kube-system/configmaps/cluster-info"} {
		if status, _ := get(anon, cp.server()+path); status != http.StatusUnauthorized && status != http.StatusForbidden {
			t.Errorf("anonymous GET %s: %d, want 401/403", path, status)
		}
	}

	// delete: the token stops working and leaves cluster-info's signatures.
	out, stderr, err = cp.run("token", "delete", tok.id)
	if err != nil || strings.TrimSpace(out) != "token "+tok.id+" deleted" {
		t.Fatalf("token delete: %v %q %s", err, out, stderr)
	}
	// The apiserver caches successful token authentications for 10 s.
	mustPoll(t, 30*time.Second, "deleted token refused", func(ctx context.Context) error {
		_, err := bearerClient(t, cp, tok.token).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("deleted token: %v, want 401", err)
		}
		return nil
	})
	mustPoll(t, 30*time.Second, "signature of the deleted token removed", func(ctx context.Context) error {
		cm, err := admin.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
		if err == nil && cm.Data["jws-kubeconfig-"+tok.id] != "" {
			return fmt.Errorf("still signed")
		}
		return err
	})

	// Bad input: one line each, no stack trace.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "delete", tok.id}, "error: token " + tok.id + " not found"},
		{[]string{"token", "delete", "NOT-AN-ID"}, `error: invalid token ID "NOT-AN-ID"`},
		{[]string{"token", "create", "--ttl", "tomorrow"}, `error: --ttl: invalid value "tomorrow"`},
		{[]string{"token", "create", "--ttl", "-1h"}, `error: --ttl: invalid value "-1h"`},
	} {
		out, stderr, err := cp.run(tc.args...)
		if err == nil || !strings.HasPrefix(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || out != "" {
			t.Errorf("%v: err %v, stderr %q, want one line starting %q", tc.args, err, stderr, tc.want)
		}
	}

	// An expired token is refused, then removed by tokencleaner.
	short := createToken(t, cp, "--ttl", "1s")
	mustPoll(t, 30*time.Second, "expired token refused and removed", func(ctx context.Context) error {
		_, err := bearerClient(t, cp, short.token).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if !apierrors.IsUnauthorized(err) {
			return fmt.Errorf("expired token: %v, want 401", err)
		}
		if _, err := admin.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+short.id, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("expired token Secret still there (%v)", err)
		}
		return nil
	})
	out, _, _ = cp.run("token", "list")
	if strings.Contains(out, short.id) {
		t.Errorf("expired token still listed:\n%s", out)
	}
}

// TestJoinObjectsRepaired: a restart restores join RBAC a user broke.
func TestJoinObjectsRepaired(t *testing.T) {
	cp := newJoinControlPlane(t)
	cp.start()
	ctx := context.Background()
	admin := cp.client()
	crb, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, joinserver.BootstrapperBinding, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crb.Subjects = nil
	if _, err := admin.RbacV1().ClusterRoleBindings().Update(ctx, crb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.RbacV1().RoleBindings("kube-public").Delete(ctx, joinserver.ClusterInfoReaderRole, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// What an earlier release made: kube-controller-manager approving every
	// join token's client CSR, whatever name it asks for.
	legacy := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: joinserver.RemovedAutoApproveBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:certificates.k8s.io:certificatesigningrequests:nodeclient"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: join.NodeBootstrapGroup}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, legacy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cp.stop()
	cp.start()
	crb, err = admin.RbacV1().ClusterRoleBindings().Get(ctx, joinserver.BootstrapperBinding, metav1.GetOptions{})
	if err != nil || len(crb.Subjects) != 1 || crb.Subjects[0].Name != join.NodeBootstrapGroup {
		t.Errorf("bootstrapper binding not repaired: %v %+v", err, crb)
	}
	if _, err := admin.RbacV1().RoleBindings("kube-public").Get(ctx, joinserver.ClusterInfoReaderRole, metav1.GetOptions{}); err != nil {
		t.Errorf("cluster-info reader binding not restored: %v", err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, joinserver.RemovedAutoApproveBinding, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the generic auto-approval of join tokens' CSRs is still bound: %v", err)
	}
	// Nothing else lets a join token's CSR be approved by kube-controller-manager.
	sar := sarFor("system:bootstrap:abcdef", "create", "certificates.k8s.io", "certificatesigningrequests")
	sar.Spec.Groups = []string{"system:bootstrappers", join.NodeBootstrapGroup, "system:authenticated"}
	sar.Spec.ResourceAttributes.Subresource = "nodeclient"
	if got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{}); err != nil || got.Status.Allowed {
		t.Errorf("join tokens may still be approved as nodeclient: %v %+v", err, got.Status)
	}
}

func get(client *http.Client, url string) (int, string) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
