package integration

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/retry"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinnode"
	"github.com/vcluster-standalone/vcluster-standalone/systemd"
)

// njServices records what join asks of systemd.
type njServices struct{ calls []string }

func (f *njServices) DaemonReload(context.Context) error {
	f.calls = append(f.calls, "daemon-reload")
	return nil
}
func (f *njServices) Enable(_ context.Context, u string) error {
	f.calls = append(f.calls, "enable "+u)
	return nil
}
func (f *njServices) Start(_ context.Context, u string) error {
	f.calls = append(f.calls, "start "+u)
	return nil
}

// njDirs stand in for /etc/node-agent, /var/lib/node-agent and /etc/systemd/system.
type njDirs struct{ config, dataDir, unitDir string }

func newNJDirs(t *testing.T) njDirs {
	root := t.TempDir()
	return njDirs{filepath.Join(root, "etc", "node-agent", "config.yaml"), filepath.Join(root, "var", "lib", "node-agent"), filepath.Join(root, "etc", "systemd", "system")}
}

// args keep join inside the temp dirs; systemctl is `true`, so no node-agent
// really starts and join must not wait for a Ready Node.
func (d njDirs) args() []string {
	return []string{"--config", d.config, "--data-dir", d.dataDir, "--systemd-dir", d.unitDir, "--systemctl", "true", "--wait", "0"}
}

func (d njDirs) node(server, name string) *config.Node {
	n := &config.Node{Server: server, NodeName: name, DataDir: d.dataDir}
	config.SetNodeDefaults(n, nil)
	return n
}

func (jc *njCluster) nodeJoin(d njDirs, server, token, name string, services joinnode.ServiceManager, pins ...string) *joinnode.NodeJoin {
	unit, _ := systemd.Unit(join.NodeUnit)
	if len(pins) == 0 {
		pins = []string{jc.pin}
	}
	return &joinnode.NodeJoin{Node: d.node(server, name), ConfigFile: d.config, UnitDir: d.unitDir, Unit: unit,
		Token: token, CACertHashes: pins, Services: services, Start: false,
		SignatureWait: 2 * time.Second, ConnectTimeout: 5 * time.Second, ApprovalTimeout: 60 * time.Second, Out: jc.log}
}

// testLog sends join's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// snapshot maps every file below the dirs to its content and mode.
func (d njDirs) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range []string{filepath.Dir(d.config), d.dataDir, d.unitDir} {
		filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			info, _ := os.Lstat(p)
			data, _ := os.ReadFile(p)
			out[p] = info.Mode().String() + info.ModTime().String() + string(data)
			return nil
		})
	}
	return out
}

// checkNodeCert checks the kubelet client certificate join left behind and
// returns it.
func (jc *njCluster) checkNodeCert(t *testing.T, d njDirs, name string) *x509.Certificate {
	t.Helper()
	n := d.node("", name)
	info, err := os.Stat(n.KubeletClientCertFile())
	if err != nil {
		t.Fatalf("no client certificate: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("client certificate mode %v, want 0600", info.Mode().Perm())
	}
	certs, err := certutil.CertsFromFile(n.KubeletClientCertFile())
	if err != nil {
		t.Fatal(err)
	}
	cert := certs[0]
	if cert.Subject.CommonName != "system:node:"+name || !slices.Contains(cert.Subject.Organization, "system:nodes") {
		t.Errorf("certificate subject %s", cert.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(jc.ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate not issued by the cluster CA for client auth: %v", err)
	}
	if info, err := os.Stat(n.KubeletKubeconfig()); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("kubelet kubeconfig: %v %v", err, info)
	}
	if _, err := config.LoadNode(d.config, false); err != nil {
		t.Errorf("node config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.unitDir, join.NodeUnit)); err != nil {
		t.Errorf("unit: %v", err)
	}
	return cert
}

// njKubeletClient is a client with the credentials join wrote for the
// kubelet, talking to the API server directly (the recording proxy
// terminates TLS, so client certificates do not pass it).
func (jc *njCluster) njKubeletClient(t *testing.T, d njDirs) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags(jc.server, d.node("", "x").KubeletKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func TestNodeJoin(t *testing.T) {
	jc := newNJCluster(t)
	proxy := jc.newProxy(t)
	token := jc.createToken(t, 0)
	_, secret, _ := strings.Cut(token, ".")
	nodeA := newNJDirs(t)

	t.Run("joins; no credential is sent before cluster-info is verified", func(t *testing.T) {
		services := &njServices{}
		begin := time.Now()
		res, err := jc.nodeJoin(nodeA, proxy.url, token, "node-a", services).Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("joined in %.2fs: discovery %.3fs, CSR %s approved in %.3fs", time.Since(begin).Seconds(), res.Discovery.Seconds(), res.CSRName, res.Approval.Seconds())
		jc.checkNodeCert(t, nodeA, "node-a")
		csr, err := jc.admin.CertificatesV1().CertificateSigningRequests().Get(context.Background(), res.CSRName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !njApproved(csr) || csr.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName || !strings.HasPrefix(csr.Spec.Username, "system:bootstrap:") {
			t.Errorf("CSR %s: approved=%v signer=%s requested by %s", csr.Name, njApproved(csr), csr.Spec.SignerName, csr.Spec.Username)
		}
		if want := []string{"daemon-reload", "enable node-agent.service"}; !slices.Equal(services.calls, want) {
			t.Errorf("systemd calls %v, want %v", services.calls, want)
		}
		// Every request up to the first with a credential was an anonymous
		// GET of cluster-info; the token appears only in Authorization headers.
		reqs := proxy.requests()
		first := slices.IndexFunc(reqs, func(r njRequest) bool { return r.contains(secret) })
		if first < 2 {
			t.Fatalf("the token was sent in request %d, before discovery's two cluster-info fetches: %v", first, reqs)
		}
		for i, r := range reqs {
			if i < first && (r.method != "GET" || !strings.HasPrefix(r.uri, "/api/v1/namespaces/kube-public/configmaps/cluster-info") || len(r.header["Authorization"]) > 0) {
				t.Errorf("request %d before the credential: %s %s %v", i, r.method, r.uri, r.header)
			}
			if r.contains(secret) && r.header.Get("Authorization") != "Bearer "+token {
				t.Errorf("request %d carries the token outside the Authorization header: %s %s", i, r.method, r.uri)
			}
		}
	})

	t.Run("re-run on a joined node changes nothing", func(t *testing.T) {
		before, n := nodeA.snapshot(t), len(proxy.requests())
		res, err := jc.nodeJoin(nodeA, proxy.url, token, "node-a", &njServices{}).Run(context.Background())
		if err != nil || !res.AlreadyJoined {
			t.Fatalf("re-run: %+v %v", res, err)
		}
		if after := nodeA.snapshot(t); !maps.Equal(before, after) {
			t.Error("re-run changed files")
		}
		if len(proxy.requests()) != n {
			t.Error("re-run talked to the server")
		}
		_, err = jc.nodeJoin(nodeA, proxy.url, token, "node-z", &njServices{}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "already joined") {
			t.Errorf("joining as another name: %v", err)
		}
	})

	t.Run("wrong CA hash: one-line error, the token never reaches the server", func(t *testing.T) {
		d, n := newNJDirs(t), len(proxy.requests())
		wrong := "sha256:" + strings.Repeat("0f", 32)
		r := runNodeAgent(t, nil, append([]string{"join", "--server", proxy.url, "--token", token, "--ca-cert-hash", wrong, "--node-name", "node-x"}, d.args()...)...)
		njOneLineFailure(t, r, "CA pin mismatch")
		reqs := proxy.requests()[n:]
		if len(reqs) == 0 {
			t.Fatal("no request reached the server: the test proves nothing")
		}
		for _, req := range reqs {
			if req.contains(secret) || len(req.header["Authorization"]) > 0 || req.uri != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
				t.Errorf("request sent with a wrong pin: %s %s %v", req.method, req.uri, req.header)
			}
		}
		if len(d.snapshot(t)) != 0 {
			t.Errorf("files written: %v", d.snapshot(t))
		}
	})

	t.Run("clock hours behind: one line naming the clock, the token never reaches the server", func(t *testing.T) {
		d, n := newNJDirs(t), len(proxy.requests())
		j := jc.nodeJoin(d, proxy.url, token, "node-clock", &njServices{})
		j.Now = func() time.Time { return time.Now().Add(-3 * time.Hour) }
		_, err := j.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "clock is") || !strings.Contains(err.Error(), "behind the API server's") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("join with a clock 3 h behind: %v, want one line about the clock", err)
		}
		reqs := proxy.requests()[n:]
		if len(reqs) == 0 {
			t.Fatal("no request reached the server: the test proves nothing")
		}
		for _, req := range reqs {
			if req.contains(secret) || len(req.header["Authorization"]) > 0 {
				t.Errorf("request sent with a skewed clock: %s %s %v", req.method, req.uri, req.header)
			}
		}
		if len(d.snapshot(t)) != 0 {
			t.Errorf("files written: %v", d.snapshot(t))
		}
	})

	t.Run("malformed token: one-line error, nothing sent", func(t *testing.T) {
		d, n := newNJDirs(t), len(proxy.requests())
		r := runNodeAgent(t, nil, append([]string{"join", "--server", proxy.url, "--token", strings.Replace(token, ".", "-", 1), "--ca-cert-hash", jc.pin}, d.args()...)...)
		njOneLineFailure(t, r, "malformed token")
		if strings.Contains(r.stderr, secret) {
			t.Error("the error shows the token secret")
		}
		if len(proxy.requests()) != n {
			t.Error("a malformed token reached the network")
		}
	})

	t.Run("deleted token: unknown or expired", func(t *testing.T) {
		deleted := jc.createToken(t, 0)
		id, _, _ := strings.Cut(deleted, ".")
		if err := jc.admin.CoreV1().Secrets("kube-system").Delete(context.Background(), bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		took := jc.waitSignature(t, id, false)
		t.Logf("signature removed %.2fs after the token was deleted", took.Seconds())
		_, err := jc.nodeJoin(newNJDirs(t), jc.server, deleted, "node-d", &njServices{}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), `token "`+id+`" is unknown or expired`) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("expired token (ttl 1s): unknown or expired", func(t *testing.T) {
		expired := jc.createToken(t, time.Second)
		id, _, _ := strings.Cut(expired, ".")
		begin := time.Now()
		mustPoll(t, 90*time.Second, "tokencleaner removes the expired token", func(ctx context.Context) error {
			_, err := jc.admin.CoreV1().Secrets("kube-system").Get(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err == nil {
				return fmt.Errorf("bootstrap-token-%s still exists", id)
			}
			return err
		})
		jc.waitSignature(t, id, false)
		t.Logf("expired token and its signature gone %.2fs after creation", time.Since(begin).Seconds())
		d := newNJDirs(t)
		r := runNodeAgent(t, nil, append([]string{"join", "--server", jc.server, "--token", expired, "--ca-cert-hash", jc.pin, "--node-name", "node-e"}, d.args()...)...)
		njOneLineFailure(t, r, `token "`+id+`" is unknown or expired`)
	})

	t.Run("a node cannot get a certificate for another node's name", func(t *testing.T) {
		client := jc.njKubeletClient(t, nodeA)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Control: the node may renew its own certificate (selfnodeclient).
		if _, err := joinnode.RequestKubeletClientCert(ctx, client, "node-a", []*x509.Certificate{jc.ca}); err != nil {
			t.Fatalf("renewing its own certificate: %v", err)
		}
		short, cancel2 := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel2()
		_, err := joinnode.RequestKubeletClientCert(short, client, "node-b", []*x509.Certificate{jc.ca})
		if err == nil {
			t.Fatal("node-a obtained a certificate for system:node:node-b")
		}
		// Refused at creation (NodeRestriction) or never approved: either way no certificate.
		if !strings.Contains(err.Error(), "refused a certificate request for system:node:node-b") && !strings.Contains(err.Error(), "was not approved in time") {
			t.Errorf("unexpected error: %v", err)
		}
		t.Logf("refused: %v", err)
		list, lerr := jc.admin.CertificatesV1().CertificateSigningRequests().List(context.Background(), metav1.ListOptions{})
		if lerr != nil {
			t.Fatal(lerr)
		}
		for _, csr := range list.Items {
			req, _ := njCSRSubject(csr.Spec.Request)
			if req == "system:node:node-b" && (njApproved(&csr) || len(csr.Status.Certificate) > 0) {
				t.Errorf("CSR %s for node-b by %s was approved", csr.Name, csr.Spec.Username)
			}
		}
	})

	t.Run("a Node of the same name blocks the join, Ready or not, until it is deleted", func(t *testing.T) {
		ctx := context.Background()
		nodes := jc.admin.CoreV1().Nodes()
		if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-r"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer nodes.Delete(ctx, "node-r", metav1.DeleteOptions{})
		setReady := func(status corev1.ConditionStatus) {
			// Controllers update the Node too (taints): retry on conflicts.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				node, err := nodes.Get(ctx, "node-r", metav1.GetOptions{})
				if err != nil {
					return err
				}
				node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
				_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// A NotReady Node is no proof the name is free: a token holder could
		// take a powered-off node's name. The control plane decides the same
		// (TestKubeletTrustChain attacks it past this check).
		for _, status := range []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse} {
			setReady(status)
			_, err := jc.nodeJoin(newNJDirs(t), jc.server, token, "node-r", &njServices{}).Run(ctx)
			if err == nil || !strings.Contains(err.Error(), `a Node named "node-r" already exists`) || !strings.Contains(err.Error(), "vcluster-standalone kubectl delete node node-r") {
				t.Fatalf("joining under a Node's name (Ready %s): %v", status, err)
			}
		}
		if err := nodes.Delete(ctx, "node-r", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := jc.nodeJoin(newNJDirs(t), jc.server, token, "node-r", &njServices{}).Run(ctx); err != nil {
			t.Fatalf("joining under a deleted Node's name: %v", err)
		}
	})

	t.Run("deleted and reset node joins again with the same name; half-finished join re-runs", func(t *testing.T) {
		// The kubelet would register the Node with these credentials.
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
		if _, err := jc.njKubeletClient(t, nodeA).CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil {
			t.Fatalf("node registers itself: %v", err)
		}
		if err := jc.admin.CoreV1().Nodes().Delete(context.Background(), "node-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{filepath.Dir(nodeA.config), nodeA.dataDir, nodeA.unitDir} { // reset
			os.RemoveAll(p)
		}
		if _, err := jc.nodeJoin(nodeA, jc.server, token, "node-a", &njServices{}).Run(context.Background()); err != nil {
			t.Fatalf("re-join after delete and reset: %v", err)
		}
		jc.checkNodeCert(t, nodeA, "node-a")
		if _, err := jc.njKubeletClient(t, nodeA).CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{}); err != nil {
			t.Fatalf("re-joined node registers again: %v", err)
		}
		// A join interrupted before its last step (the config file) is done
		// again. It never started the kubelet, so no Node was registered.
		if err := jc.admin.CoreV1().Nodes().Delete(context.Background(), "node-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		os.Remove(nodeA.config)
		res, err := jc.nodeJoin(nodeA, jc.server, token, "node-a", &njServices{}).Run(context.Background())
		if err != nil || res.AlreadyJoined {
			t.Fatalf("half-finished join: %+v %v", res, err)
		}
		jc.checkNodeCert(t, nodeA, "node-a")
	})

	t.Run("node-agent join binary: progress, token from the environment, re-run", func(t *testing.T) {
		d := newNJDirs(t)
		env := []string{"NODE_AGENT_TOKEN=" + token}
		// A systemctl that records the environment join hands its children.
		childEnv := filepath.Join(t.TempDir(), "systemctl.env")
		systemctl := filepath.Join(t.TempDir(), "systemctl")
		if err := os.WriteFile(systemctl, []byte("#!/bin/sh\nenv >>"+childEnv+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string{"join", "--server", jc.server, "--ca-cert-hash", jc.pin, "--node-name", "node-c"}, d.args()...), "--systemctl", systemctl)
		begin := time.Now()
		r := runNodeAgent(t, env, args...)
		if r.code != 0 {
			t.Fatalf("join: %+v", r)
		}
		// node-agent dropped the token from its environment before running systemctl.
		if seen, err := os.ReadFile(childEnv); err != nil || len(seen) == 0 {
			t.Errorf("join ran no systemctl: %v", err)
		} else if strings.Contains(string(seen), secret) || strings.Contains(string(seen), "NODE_AGENT_TOKEN") {
			t.Errorf("systemctl, started by join, inherited the token:\n%s", seen)
		}
		t.Logf("node-agent join took %.2fs:\n%s", time.Since(begin).Seconds(), r.stdout)
		for _, want := range []string{"[join] discovery: cluster-info verified", "approved and issued in", "[join] node node-c joined"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Error("output shows the token secret")
		}
		jc.checkNodeCert(t, d, "node-c")
		before := d.snapshot(t)
		for p, v := range before {
			if strings.Contains(v, secret) {
				t.Errorf("%s holds the token secret", p)
			}
		}
		r = runNodeAgent(t, env, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "already joined") {
			t.Fatalf("re-run: %+v", r)
		}
		if !maps.Equal(before, d.snapshot(t)) {
			t.Error("re-run changed files")
		}
	})
}

func njApproved(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved {
			return true
		}
	}
	return false
}

func njCSRSubject(pemData []byte) (string, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return "", fmt.Errorf("no PEM block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", err
	}
	return req.Subject.CommonName, nil
}

func njOneLineFailure(t *testing.T, r naResult, want string) {
	t.Helper()
	line := strings.TrimSuffix(r.stderr, "\n")
	if r.code != 1 || strings.Contains(line, "\n") || !strings.HasPrefix(line, "error: ") || !strings.Contains(line, want) {
		t.Errorf("want exit 1 and one line containing %q, got exit %d, stderr %q", want, r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "joined") {
		t.Errorf("stdout claims a join: %q", r.stdout)
	}
}
