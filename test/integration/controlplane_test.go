package integration

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestStartUseRestart is the control plane's main user path: start, use it
// with kubectl and client-go, stop it, start it again on the same data dir.
func TestStartUseRestart(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	ctx := context.Background()

	out, stderr, err := cp.run("kubectl", "get", "--raw", "/readyz")
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("kubectl get --raw /readyz: %q %q %v", out, stderr, err)
	}
	out, _, err = cp.run("kubectl", "version", "-o", "yaml")
	if err != nil || !strings.Contains(out, "gitVersion: v1.36.3") || strings.Contains(out, "v0.0.0") {
		t.Fatalf("kubectl version must report v1.36.3 for client and server: %v\n%s", err, out)
	}
	if info, err := cp.client().Discovery().ServerVersion(); err != nil || info.GitVersion != "v1.36.3" {
		t.Fatalf("server version %v %v", info, err)
	}

	// A plain kubectl with the kubeconfig start wrote, and one printed by
	// `kubeconfig --server`, both work.
	if out, stderr, err := cp.run("kubectl", "--kubeconfig", cp.kubeconfig, "create", "namespace", "demo"); err != nil {
		t.Fatalf("kubectl create namespace: %v %s %s", err, out, stderr)
	}
	printed, stderr, err := cp.run("kubeconfig", "--server", fmt.Sprintf("https://localhost:%d", cp.apiPort))
	if err != nil || !strings.Contains(printed, fmt.Sprintf("server: https://localhost:%d", cp.apiPort)) {
		t.Fatalf("kubeconfig --server: %v %s\n%s", err, stderr, printed)
	}
	printedPath := filepath.Join(cp.dir, "printed.kubeconfig")
	writeFile(t, printedPath, printed)
	if out, stderr, err := cp.run("kubectl", "--kubeconfig", printedPath, "get", "namespace", "demo", "-o", "name"); err != nil || strings.TrimSpace(out) != "namespace/demo" {
		t.Fatalf("printed kubeconfig does not work: %v %s %s", err, out, stderr)
	}
	if _, stderr, err := cp.run("kubeconfig", "--server", "http://insecure:6443"); err == nil || !strings.Contains(stderr, "must be an https URL") {
		t.Fatalf("kubeconfig --server with http must fail with one line: %v %s", err, stderr)
	}

	client := cp.client()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep", Namespace: "demo"}, Data: map[string]string{"k": "v"}}
	if _, err := client.CoreV1().ConfigMaps("demo").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hidden", Namespace: "demo"}, StringData: map[string]string{"password": "plain-text-marker"}}
	if _, err := client.CoreV1().Secrets("demo").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	raw := readEtcdKey(t, cp, "/registry/secrets/demo/hidden")
	if !strings.HasPrefix(raw, "k8s:enc:secretbox:v1:") || strings.Contains(raw, "plain-text-marker") {
		t.Fatalf("secret stored unencrypted in etcd: %q", raw[:min(len(raw), 60)])
	}

	// The status command sees every component healthy.
	out, stderr, err = cp.run("status", "--config", cp.configFile)
	if err != nil {
		t.Fatalf("status: %v\n%s%s", err, out, stderr)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if !strings.Contains(out, name) {
			t.Errorf("status does not list %s:\n%s", name, out)
		}
	}

	// status --args prints what the running process parsed, one line each.
	out, stderr, err = cp.run("status", "--args", "--config", cp.configFile)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 4 || !strings.HasPrefix(lines[0], "etcd --") || !strings.HasPrefix(lines[3], "kube-scheduler --") {
		t.Fatalf("status --args: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = cp.run("status", "--args", "kube-apiserver", "--config", cp.configFile)
	if err != nil || !strings.HasPrefix(out, "kube-apiserver ") || !strings.Contains(out, fmt.Sprintf(" --secure-port=%d ", cp.apiPort)) {
		t.Fatalf("status --args kube-apiserver: %v\n%s%s", err, out, stderr)
	}

	out, stderr, err = cp.run("certs", "check", "--config", cp.configFile)
	if err != nil || !strings.Contains(out, "apiserver-etcd-client") || strings.Contains(out, "missing") {
		t.Fatalf("certs check: %v\n%s%s", err, out, stderr)
	}

	before := fileDigests(t, filepath.Join(cp.dataDir, "pki"))
	cp.stop()
	if state := lastState(cp.notify); state != "STOPPING=1" {
		t.Errorf("sd_notify on SIGTERM: %q, want STOPPING=1", state)
	}

	cp.start()
	got, err := cp.client().CoreV1().ConfigMaps("demo").Get(ctx, "keep", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("ConfigMap lost across restart: %v %v", got, err)
	}
	s, err := cp.client().CoreV1().Secrets("demo").Get(ctx, "hidden", metav1.GetOptions{})
	if err != nil || string(s.Data["password"]) != "plain-text-marker" {
		t.Fatalf("Secret unreadable after restart: %v", err)
	}
	after := fileDigests(t, filepath.Join(cp.dataDir, "pki"))
	if len(before) == 0 || fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("certificate files changed across restart:\nbefore %v\nafter  %v", before, after)
	}
	cp.stop()
}

// TestSecureDefaults: anonymous requests reach health checks only, the
// default Pod Security Standard is enforced, and admin is not system:masters.
func TestSecureDefaults(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	ctx := context.Background()

	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for path, want := range map[string]int{"/readyz": 200, "/livez": 200, "/version": 200, "/api/v1/namespaces": 401, "/apis": 401, "/metrics": 401} {
		resp, err := insecure.Get(fmt.Sprintf("https://127.0.0.1:%d%s", cp.apiPort, path))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("anonymous GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "priv"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)},
		}}},
	}
	_, err := cp.client().CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "baseline:latest"`) {
		t.Fatalf("privileged pod must be refused by the baseline standard, got %v", err)
	}

	review, err := cp.client().AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if groups := review.Status.UserInfo.Groups; slices.Contains(groups, "system:masters") || !slices.Contains(groups, "vcluster-standalone:cluster-admins") {
		t.Fatalf("admin kubeconfig groups %v: want vcluster-standalone:cluster-admins, never system:masters", groups)
	}
}

func ptr[T any](v T) *T { return &v }

// readEtcdKey reads a raw value from the embedded etcd with the apiserver's
// own client certificate.
func readEtcdKey(t *testing.T, cp *controlPlane, key string) string {
	t.Helper()
	client := etcdClient(t, cp)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get %s: %v", key, err)
	}
	return string(resp.Kvs[0].Value)
}

// etcdClient connects to the control plane's etcd with the apiserver's own
// client certificate.
func etcdClient(t *testing.T, cp *controlPlane) *clientv3.Client {
	t.Helper()
	var cfg struct {
		Ports struct {
			EtcdClient int `json:"etcdClient"`
		} `json:"ports"`
	}
	data, _ := os.ReadFile(cp.configFile)
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(cp.dataDir, "pki")
	tlsInfo := transport.TLSInfo{
		CertFile: filepath.Join(pki, "apiserver-etcd-client.crt"), KeyFile: filepath.Join(pki, "apiserver-etcd-client.key"),
		TrustedCAFile: filepath.Join(pki, "etcd", "ca.crt"),
	}
	tlsConfig, err := tlsInfo.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", cfg.Ports.EtcdClient)}, TLS: tlsConfig, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// fileDigests maps every file below dir to its content hash and mtime.
func fileDigests(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		sum := sha256.Sum256(data)
		out[path] = hex.EncodeToString(sum[:8]) + "@" + info.ModTime().String()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lastState drains the notify socket and returns the last state received.
func lastState(n *notifySocket) string {
	last := ""
	for {
		select {
		case s := <-n.states:
			last = s
		case <-time.After(500 * time.Millisecond):
			return last
		}
	}
}

// TestStopDuringStart: SIGTERM while components are still starting stops
// what started and exits 0, without ever reporting READY=1.
func TestStopDuringStart(t *testing.T) {
	cp := newControlPlane(t)
	if err := cp.startNoWait(); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, time.Minute, "waiting for the apiserver to start", func(context.Context) error {
		if data, _ := os.ReadFile(cp.logPath); !strings.Contains(string(data), "starting kube-apiserver") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	cp.stop()
	for _, state := range drain(cp.notify) {
		if state == "READY=1" {
			t.Fatal("reported READY=1 although stopped during start")
		}
	}
}
