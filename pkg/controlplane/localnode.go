package controlplane

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/nodecreds"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
	"github.com/vcluster-standalone/vcluster-standalone/systemd"
)

// localNode makes the control-plane host a node (joinNode): it gives the
// host's own node-agent what `node-agent join` gives other machines, in the
// same layout, but without a bootstrap token: the kubelet client certificate
// is signed directly with the cluster CA. install.sh then starts
// node-agent.service. Files are written only when missing or unusable, never
// over a certificate the kubelet has since rotated.
type localNode struct {
	cfg      *config.ControlPlane
	paths    Paths
	bundle   *pki.Bundle
	hostname func() (string, error)
	now      func() time.Time
	progress io.Writer

	node *config.Node // resolved by Init
}

func (l *localNode) Name() string { return "local node credentials" }
func (l *localNode) Stop() error  { return nil }

// NodeName is the name the host's node registers as; known after Init.
func (l *localNode) NodeName() string {
	if l.node == nil {
		return ""
	}
	return l.node.NodeName
}

// Init resolves the node config: the existing file when there is one (so a
// nodeName or iface set there is kept), else the defaults for this host.
func (l *localNode) Init(context.Context) error {
	n, err := config.LoadNode(l.cfg.LocalNode.ConfigFile, true)
	if err != nil {
		return fmt.Errorf("localNode.configFile: %w; fix or remove it, or start with --join-node=false", err)
	}
	if n.Server == "" {
		n = l.wantNode()
	} else if !slices.Contains(l.servers(), n.Server) {
		return fmt.Errorf("%s says this host is a node of %s, not of this control plane (%s); reset it with `node-agent reset`, or start with --join-node=false",
			l.cfg.LocalNode.ConfigFile, n.Server, l.servers()[0])
	}
	config.SetNodeDefaults(n, l.hostname)
	if errs := n.Validate(); len(errs) > 0 {
		return fmt.Errorf("this host's node config: %w (start with --join-node=false to run no node here)", errs[0])
	}
	l.node = n
	return nil
}

// wantNode is the node config start writes: the API server on the host's
// own address (the serving certificate covers it), the advertise address as
// the node IP, the hostname as the name.
func (l *localNode) wantNode() *config.Node {
	n := &config.Node{Server: l.servers()[0], NodeIP: l.cfg.AdvertiseAddress, DataDir: l.cfg.LocalNode.DataDir}
	config.SetNodeDefaults(n, l.hostname)
	return n
}

// servers are the URLs of this API server a local node config may name.
func (l *localNode) servers() []string {
	return []string{LocalServer(l.cfg), "https://" + net.JoinHostPort(l.cfg.AdvertiseAddress, strconv.Itoa(l.cfg.APIPort))}
}

func (l *localNode) Start(context.Context) error {
	n := l.node
	files := nodecreds.NodeFiles{ConfigFile: l.cfg.LocalNode.ConfigFile, UnitDir: l.cfg.LocalNode.UnitDir}
	unit, err := systemd.Unit(join.NodeUnit)
	if err != nil {
		return err
	}
	files.Unit = unit
	servingCA := pki.EncodeCert(l.bundle.CAs[pki.KubeletServingCA].Cert)
	if why := l.unusable(); why == nil {
		// Only the unit and the kubelet-serving CA (it may have been
		// rotated) follow the control plane; credentials stay the kubelet's.
		if err := nodecreds.WriteUnit(files); err != nil {
			return fmt.Errorf("%w (joinNode: start with --join-node=false to run no node on this host)", err)
		}
		if _, err := nodecreds.WriteKubeletServingCA(n, servingCA); err != nil {
			return fmt.Errorf("%w (joinNode: start with --join-node=false to run no node on this host)", err)
		}
		fmt.Fprintf(l.progress, "local node %s: credentials in %s in place\n", n.NodeName, n.DataDir)
		return nil
	} else if !errors.Is(why, os.ErrNotExist) {
		fmt.Fprintf(l.progress, "local node %s: issuing new credentials: %v\n", n.NodeName, why)
	}
	cert, err := l.issue()
	if err != nil {
		return err
	}
	ca := l.bundle.TrustPEM(pki.ClusterCA)
	certFile, err := nodecreds.WriteNodeFiles(n, files, ca, servingCA, cert)
	if err != nil {
		return fmt.Errorf("%w (joinNode: run as root, set the localNode paths, or start with --join-node=false to run no node on this host)", err)
	}
	fmt.Fprintf(l.progress, "local node %s: wrote %s, %s (0600), %s and %s\n", n.NodeName, files.ConfigFile, certFile, n.KubeletKubeconfig(), files.UnitPath())
	return nil
}

// unusable says why the node's files must be (re)written, or nil when the
// config, the kubeconfig and a client certificate of the current cluster CA
// for this node are all in place.
func (l *localNode) unusable() error {
	_, err := nodecreds.Check(l.node, l.cfg.LocalNode.ConfigFile, l.paths.Trust(pki.ClusterCA), l.now())
	return err
}

// issue signs a kubelet client certificate for the node with the cluster CA.
func (l *localNode) issue() (*nodecreds.KubeletClientCert, error) {
	spec := pki.CertSpec{
		Name: "local-node-kubelet-client", CA: pki.ClusterCA,
		CommonName: join.NodeUserPrefix + l.node.NodeName, Organizations: []string{join.NodesGroup},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err := l.bundle.Issue(spec, l.now())
	if err != nil {
		return nil, err
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	return &nodecreds.KubeletClientCert{CertPEM: certPEM, KeyPEM: keyPEM, Cert: certs[0]}, nil
}

// hostNodeName returns the name this host's own node runs as (joinNode), as
// the node config localNode writes says, or "" when there is none. The CSR
// approver lets that node, and no other, name the host's own name and
// address, which the API server's certificate lists too.
func hostNodeName(c *config.ControlPlane) func() string {
	return func() string {
		if !c.JoinsNode() {
			return ""
		}
		n, err := config.LoadNode(c.LocalNode.ConfigFile, true)
		if err != nil || n.Server == "" {
			return ""
		}
		config.SetNodeDefaults(n, os.Hostname)
		return n.NodeName
	}
}
