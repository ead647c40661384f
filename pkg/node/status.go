package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/netpol"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/network"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	csinode "github.com/vcluster-standalone/vcluster-standalone/pkg/csi/node"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/node/mirror"
)

// Check is one line of `node-agent status`.
type Check struct {
	Part   string
	OK     bool
	Detail string
}

// certWarning is how close to expiry a certificate is reported as a problem.
const certWarning = 30 * 24 * time.Hour

// Status checks every part of the node from the outside: the sockets and
// health endpoints the parts serve, the network devices, the certificates
// and what the control plane says of the Node.
func Status(ctx context.Context, n *config.Node) []Check {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	checks := []Check{containerdCheck(ctx), healthCheck(ctx, "kubelet", "http://127.0.0.1:10248/healthz"),
		healthCheck(ctx, "kube-proxy", "http://127.0.0.1:10256/healthz")}
	checks = append(checks, networkChecks(n)...)
	ok, detail := csinode.Status(ctx, n)
	checks = append(checks, Check{"storage", ok, detail})
	checks = append(checks,
		certCheck("kubelet client certificate", n.KubeletClientCertFile()),
		certCheck("kubelet serving certificate", n.KubeletServingCertFile()))
	node, err := ownNode(ctx, n)
	checks = append(checks, nodeCheck(n, node, err), mirrorCheck(ctx, n, node, err))
	return checks
}

// ownNode is this node's Node object, read with the node's own credential.
func ownNode(ctx context.Context, n *config.Node) (*corev1.Node, error) {
	cs, err := NodeClient(n)
	if err != nil {
		return nil, err
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, n.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	return node, nil
}

// mirrorCheck asks this node's registry mirror for /v2/ the way a peer
// does (with the node's client certificate, verifying its serving one).
func mirrorCheck(ctx context.Context, n *config.Node, node *corev1.Node, nodeErr error) Check {
	const part = "registry mirror"
	if !n.MirrorEnabled() {
		return Check{part, true, "disabled (registryMirror: disabled)"}
	}
	if nodeErr != nil {
		return Check{part, false, nodeErr.Error()}
	}
	endpoint := node.Annotations[mirror.Annotation]
	if endpoint == "" {
		return Check{part, false, "not published on the Node yet"}
	}
	peers := fmt.Sprintf("; %d peer(s) to pull through", len(cachedPeers(n)))
	cert, err := tls.LoadX509KeyPair(n.KubeletClientCertFile(), n.KubeletClientCertFile())
	if err != nil {
		return Check{part, false, err.Error()}
	}
	ca, err := os.ReadFile(n.KubeletServingCAFile())
	if err != nil {
		return Check{part, false, err.Error()}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/v2/", nil)
	resp, err := cl.Do(req)
	if err != nil {
		return Check{part, false, endpoint + ": " + err.Error()}
	}
	resp.Body.Close()
	return Check{part, resp.StatusCode == http.StatusOK, fmt.Sprintf("%s: %s%s", endpoint, resp.Status, peers)}
}

// PrintStatus writes the checks as a table and returns an error naming the
// parts that are not ok.
func PrintStatus(w io.Writer, checks []Check) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var bad []string
	for _, c := range checks {
		state := "ok"
		if !c.OK {
			state, bad = "FAIL", append(bad, c.Part)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Part, state, c.Detail)
	}
	tw.Flush()
	if len(bad) > 0 {
		return fmt.Errorf("not healthy: %v", bad)
	}
	return nil
}

func containerdCheck(ctx context.Context) Check {
	if err := ping(ctx, config.ContainerdSocket()); err != nil {
		return Check{"containerd", false, err.Error()}
	}
	return Check{"containerd", true, "serving CRI on " + config.ContainerdSocket()}
}

func healthCheck(ctx context.Context, part, url string) Check {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Check{part, false, err.Error()}
	}
	resp.Body.Close()
	return Check{part, resp.StatusCode == http.StatusOK, fmt.Sprintf("%s: %s", url, resp.Status)}
}

func networkChecks(n *config.Node) []Check {
	conf := filepath.Join(n.CNIConfDir(), cni.ConfListFile)
	c := Check{"pod network", true, conf}
	if _, err := os.Stat(conf); err != nil {
		c = Check{"pod network", false, "no CNI config (" + conf + "): the node has no pod CIDR yet or the network controller is not running"}
	} else if _, err := net.InterfaceByName(cni.DefaultBridge); err != nil {
		c.Detail += "; bridge " + cni.DefaultBridge + " appears with the first pod"
	}
	checks := []Check{c}
	if data, err := os.ReadFile(n.ClusterSettingsFile()); err == nil {
		s, err := config.ParseClusterSettings(string(data))
		if err == nil {
			checks = append(checks, netpolCheck(s.NetworkPolicy.Enabled))
		}
		if err == nil && s.Backend == config.BackendVXLAN {
			if _, err := net.InterfaceByName(network.VXLANDevice); err != nil {
				checks = append(checks, Check{"overlay", false, network.VXLANDevice + " missing"})
			} else {
				checks = append(checks, Check{"overlay", true, fmt.Sprintf("%s (VNI %d)", network.VXLANDevice, s.VNI)})
			}
		}
	}
	return checks
}

// netpolCheck reports whether the policy table is loaded and its counters:
// drops by cause, and the packets each NetworkPolicy let through.
func netpolCheck(enabled bool) Check {
	const part = "network policy"
	loaded, err := netpol.Exists()
	switch {
	case err != nil:
		return Check{part, false, err.Error()}
	case !enabled && loaded:
		return Check{part, false, "enforcement is off but table " + netpol.TableName + " is loaded"}
	case !enabled:
		return Check{part, true, "not enforced (policies.networkPolicy.enabled: false)"}
	case !loaded:
		return Check{part, false, "table " + netpol.TableName + " missing: pods of this node are not isolated"}
	}
	counters, err := netpol.Counters()
	if err != nil {
		return Check{part, false, err.Error()}
	}
	var drops, accepts []string
	for _, name := range slices.Sorted(maps.Keys(counters)) {
		entry := fmt.Sprintf("%s=%d", name, counters[name])
		if strings.Contains(name, "/") && !strings.HasPrefix(name, netpol.IsolationCounterPrefix) && !strings.HasPrefix(name, netpol.ClusterPolicyDropCounterPrefix) {
			accepts = append(accepts, entry)
		} else {
			drops = append(drops, entry)
		}
	}
	return Check{part, true, fmt.Sprintf("table %s; dropped (packets): %s; accepted by policy: %s",
		netpol.TableName, strings.Join(drops, " "), strings.Join(accepts, " "))}
}

func certCheck(part, file string) Check {
	data, err := os.ReadFile(file)
	if err != nil {
		return Check{part, false, err.Error()}
	}
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return Check{part, false, err.Error()}
		}
		left := time.Until(cert.NotAfter)
		detail := fmt.Sprintf("expires %s (in %d days)", cert.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24))
		return Check{part, left > certWarning, detail}
	}
	return Check{part, false, "no certificate in " + file}
}

func nodeCheck(n *config.Node, node *corev1.Node, err error) Check {
	part := "node " + n.NodeName
	if err != nil {
		return Check{part, false, err.Error()}
	}
	ok, why := nodeIsReady(node)
	if ok {
		why = "Ready"
	}
	return Check{part, ok, why}
}
