//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The registry mirror tests pull on purpose, so node_test.go runs them after
// TestNothingPulled has judged the rest of the suite, and before
// TestPrivateNodesUninstall takes the nodes away.

const (
	mirrorAnnotation = "registry-mirror.vcluster-standalone.io/endpoint"
	mirrorHolder     = "lab-node1" // the only node an image is imported on
	mirrorPuller     = "lab-node2"
	labSwitchNetns   = "vcslab-switch"
)

// mirrorImage builds a small image of its own (a random file makes its layer
// unlike any other node's content), imports it on the holder only and
// returns its name.
func mirrorImage(t *testing.T, tag string) string {
	t.Helper()
	bin := filepath.Dir(hostBin)
	random := make([]byte, 4096)
	rand.Read(random)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "random"), random, 0o644); err != nil {
		t.Fatal(err)
	}
	name := "mirror.test/probe:" + tag + "-" + hex.EncodeToString(random[:4])
	archive := filepath.Join(dir, "probe.tar")
	out, err := exec.Command(filepath.Join(bin, "images", "ociimage"), "-o", archive, "-name", name,
		"-file", filepath.Join(bin, "images", "busybox", "bin", "busybox")+":/bin/busybox:0755",
		"-file", filepath.Join(dir, "random")+":/random", "-link", "/bin/sleep=busybox", "-cmd", `["sleep","3600"]`).CombinedOutput()
	if err != nil {
		t.Fatalf("build %s (make images builds ociimage): %v: %s", name, err, out)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if r := inNodeStdin(t, mirrorHolder, f, "node-agent", "images", "import", "-"); r.code != 0 {
		t.Fatalf("import on %s: %s", mirrorHolder, r)
	}
	return name
}

func mirrorPod(name, image string) *corev1.Pod {
	p := busyboxPod(name, mirrorPuller)
	p.Spec.Containers[0].Image = image
	p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	return p
}

// waitPullFails creates pod and waits until its container cannot get its
// image; it returns the kubelet's message and how long that took.
func waitPullFails(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, pod.Name, err)
	}
	name, msg := pod.Name, ""
	took := poll(t, timeout, 500*time.Millisecond, "pod "+name+" reports a pull error", func() (bool, string) {
		p := getPod(t, cs, ns, name)
		for _, s := range p.Status.ContainerStatuses {
			if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				msg = w.Message
				return true, ""
			}
			if s.State.Running != nil {
				t.Fatalf("pod %s runs: the image came from somewhere", name)
			}
		}
		return false, podSummary(p)
	})
	return msg, took
}

func waitMirrorsPublished(t *testing.T, cs kubernetes.Interface, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		poll(t, 2*time.Minute, time.Second, "Node "+n+" Ready with its registry mirror published", func() (bool, string) {
			ready, why, _ := nodeReady(cs, n)
			if !ready {
				return false, why
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return node.Annotations[mirrorAnnotation] != "", "no " + mirrorAnnotation + " annotation"
		})
	}
}

func testRegistryMirror(t *testing.T) {
	track(t)
	cs := clientset(t)
	waitMirrorsPublished(t, cs, allNodes...)
	ns := testNamespace(t, cs, "e2e-mirror")

	t.Run("PullAlwaysFromThePeerThatHasIt", func(t *testing.T) {
		image := mirrorImage(t, "peer")
		since := time.Now().Add(-time.Second).Format(time.DateTime)
		began := time.Now()
		startPod(t, cs, ns, mirrorPod("from-peer", image), 90*time.Second)
		t.Logf("pod with imagePullPolicy Always running on %s %.1fs after create; the image exists only on %s", mirrorPuller, time.Since(began).Seconds(), mirrorHolder)
		journal := mustInNode(t, mirrorHolder, "journalctl", "-u", "node-agent", "--since", since, "--no-pager", "-o", "cat")
		served := false
		for _, line := range strings.Split(journal, "\n") {
			if strings.Contains(line, "registry mirror: served manifest") && strings.Contains(line, `client="system:node:`+mirrorPuller+`"`) && strings.Contains(line, image) {
				served = true
				t.Log(line)
			}
		}
		if !served {
			t.Errorf("%s's mirror did not log serving %s to %s:\n%s", mirrorHolder, image, mirrorPuller, journal)
		}
		if imgs := listImages(t, mirrorPuller); !hasImage(imgs, image) {
			t.Errorf("%s does not hold %s after the pull", mirrorPuller, image)
		}
	})

	t.Run("OnlyNodesOfTheClusterMayFetch", func(t *testing.T) {
		endpoint := "https://" + netNodeIPByName(t, cs, mirrorHolder) + ":6445/v2/"
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		// Mirrors serve with kubelet serving certificates: nodes verify them
		// with the kubelet-serving CA the control plane publishes, not the
		// cluster CA (which signs none).
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(mustInNode(t, mirrorPuller, "cat", "/var/lib/node-agent/pki/kubelet-serving-ca.crt"))) {
			t.Fatalf("%s has no kubelet-serving CA", mirrorPuller)
		}
		clusterCA := x509.NewCertPool()
		clusterCA.AppendCertsFromPEM(cfg.TLSClientConfig.CAData)
		admin, err := tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
		if err != nil {
			t.Fatal(err)
		}
		nodePEM := []byte(mustInNode(t, mirrorPuller, "cat", "/var/lib/node-agent/pki/kubelet-client-current.pem") + "\n")
		node, err := tls.X509KeyPair(nodePEM, nodePEM)
		if err != nil {
			t.Fatal(err)
		}
		getWith := func(roots *x509.CertPool, certs ...tls.Certificate) (int, error) {
			cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
			resp, err := cl.Get(endpoint)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		get := func(certs ...tls.Certificate) (int, error) { return getWith(pool, certs...) }
		if code, err := get(); err == nil {
			t.Errorf("no client certificate: %s answered %d", endpoint, code)
		} else {
			t.Logf("no client certificate: %v", err)
		}
		if code, err := get(admin); err == nil {
			t.Errorf("the cluster admin's certificate (not a node's): %s answered %d", endpoint, code)
		} else {
			t.Logf("admin certificate: %v", err)
		}
		if code, err := get(node); err != nil || code != http.StatusOK {
			t.Errorf("%s's own node certificate: %d %v", mirrorPuller, code, err)
		}
		if _, err := getWith(clusterCA, node); err == nil || !strings.Contains(err.Error(), "x509") {
			t.Errorf("the mirror's serving certificate verifies with the cluster CA: %v", err)
		}
	})

	t.Run("HolderGoneGivesAPullError", func(t *testing.T) {
		image := mirrorImage(t, "gone")
		link := "v-" + mirrorHolder
		// The holder's only link to the lab network goes down: to its peers
		// it is as gone as a powered-off machine (packets go unanswered).
		if out, err := exec.Command("ip", "-n", labSwitchNetns, "link", "set", link, "down").CombinedOutput(); err != nil {
			t.Fatalf("take %s off the lab network: %v: %s", mirrorHolder, err, out)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				if out, err := exec.Command("ip", "-n", labSwitchNetns, "link", "set", link, "up").CombinedOutput(); err != nil {
					t.Errorf("put %s back on the lab network: %v: %s", mirrorHolder, err, out)
				}
			}
		}
		t.Cleanup(restore)
		msg, took := waitPullFails(t, cs, ns, mirrorPod("holder-gone", image), 90*time.Second)
		restore()
		t.Logf("pull error after %.1fs: %s", took.Seconds(), msg)
		if !strings.Contains(msg, image) {
			t.Errorf("the pull error does not name the image %s: %q", image, msg)
		}
		waitMirrorsPublished(t, cs, mirrorHolder)
	})

	t.Run("DisabledMirrorDoesNotPull", func(t *testing.T) {
		image := mirrorImage(t, "disabled")
		setMirror(t, cs, mirrorPuller, "disabled")
		t.Cleanup(func() { setMirror(t, cs, mirrorPuller, "enabled") })
		status := inNode(t, mirrorPuller, "node-agent", "status")
		if !strings.Contains(status.stdout, "registry mirror") || !strings.Contains(status.stdout, "disabled") {
			t.Errorf("node-agent status does not say the mirror is off:\n%s", status.stdout)
		}
		if hosts := inNode(t, mirrorPuller, "ls", "/var/lib/node-agent/registry.d/_default"); hosts.code == 0 {
			t.Errorf("the disabled node still lists peers as mirrors")
		}
		msg, took := waitPullFails(t, cs, ns, mirrorPod("mirror-disabled", image), 90*time.Second)
		t.Logf("pull error after %.1fs: %s", took.Seconds(), msg)
		if !strings.Contains(msg, image) {
			t.Errorf("the pull error does not name the image %s: %q", image, msg)
		}
	})
}

// setMirror sets registryMirror in node's config, restarts node-agent and
// waits until the Node is Ready (and, when enabled, publishes its mirror).
func setMirror(t *testing.T, cs kubernetes.Interface, node, value string) {
	t.Helper()
	mustInNode(t, node, "sh", "-c", `f=/etc/node-agent/config.yaml; sed -i '/^registryMirror:/d' $f && echo "registryMirror: `+value+`" >>$f && systemctl restart node-agent`)
	if value == "enabled" {
		waitMirrorsPublished(t, cs, node)
		return
	}
	poll(t, 2*time.Minute, time.Second, "Node "+node+" Ready without a mirror", func() (bool, string) {
		ready, why, _ := nodeReady(cs, node)
		return ready, why
	})
}

func hasImage(imgs []nodeImage, name string) bool {
	for _, i := range imgs {
		if i.name == name {
			return true
		}
	}
	return false
}

// netNodeIPByName is the InternalIP of Node name.
func netNodeIPByName(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := netNodeIP(n)
	if ip == "" {
		t.Fatalf("Node %s has no InternalIP", name)
	}
	return ip
}
