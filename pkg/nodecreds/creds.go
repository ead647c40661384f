// Package nodecreds owns a joined node's credential files: the cluster CA,
// the kubelet client certificate in the kubelet's rotating layout, the
// kubelet kubeconfig and the node config that marks the node as joined.
// `node-agent join` and the control plane (for its own host) both write and
// check them here, so every node has the same layout.
package nodecreds

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

// kubeletClientPairPrefix names the kubelet client pair's files, as the
// kubelet's own certificate manager does (kubelet-client-current.pem).
const kubeletClientPairPrefix = "kubelet-client"

// KubeletClientCert is an issued kubelet client certificate and its key.
type KubeletClientCert struct {
	CSRName string
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
}

// VerifyKubeletClientCert checks the issued certificate names this node,
// is for client auth and chains to the cluster CA.
func VerifyKubeletClientCert(certPEM []byte, nodeName string, cas []*x509.Certificate) (*x509.Certificate, error) {
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if cert.Subject.CommonName != join.NodeUserPrefix+nodeName || !slices.Contains(cert.Subject.Organization, join.NodesGroup) {
		return nil, fmt.Errorf("subject is %s, want CN=%s%s, O=%s", cert.Subject, join.NodeUserPrefix, nodeName, join.NodesGroup)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("not a client certificate of the cluster CA: %v", err)
	}
	return cert, nil
}

// StoreKubeletClientCert writes the pair the way the kubelet's certificate
// manager does (pki/kubelet-client-<time>.pem, 0600, and the
// kubelet-client-current.pem symlink), so kubelet rotation takes over. It
// returns the path of the symlink.
func StoreKubeletClientCert(pkiDir string, c *KubeletClientCert) (string, error) {
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return "", err
	}
	store, err := certificate.NewFileStore(kubeletClientPairPrefix, pkiDir, pkiDir, "", "")
	if err != nil {
		return "", fmt.Errorf("failed to open the certificate store in %s: %v", pkiDir, err)
	}
	if _, err := store.Update(c.CertPEM, c.KeyPEM); err != nil {
		return "", fmt.Errorf("failed to store the kubelet client certificate: %v", err)
	}
	return store.CurrentPath(), nil
}

// KubeletKubeconfig is the kubelet's kubeconfig: the server, the CA file and
// the rotating client certificate file (which also holds the key).
func KubeletKubeconfig(server, caFile, certFile string) ([]byte, error) {
	const name = "default"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: certFile}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return clientcmd.Write(*cfg)
}

// LoadKubeletClientCert reads the current kubelet client certificate under
// pkiDir and checks it still names nodeName, chains to the CA file and has not
// expired.
func LoadKubeletClientCert(pkiDir, caFile, nodeName string, now time.Time) (*x509.Certificate, error) {
	pair, err := os.ReadFile(filepath.Join(pkiDir, kubeletClientPairPrefix+"-current.pem"))
	if err != nil {
		return nil, err
	}
	cas, err := certutil.CertsFromFile(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := VerifyKubeletClientCert(pair, nodeName, cas)
	if err != nil {
		return nil, err
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("expired on %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// NodeFiles says where a node's config and systemd unit go.
type NodeFiles struct {
	ConfigFile string // the node config (/etc/node-agent/config.yaml)
	UnitDir    string // where the unit is written (/etc/systemd/system)
	Unit       []byte // the text of NodeUnit
}

// UnitPath is where the node-agent unit is written.
func (f NodeFiles) UnitPath() string { return filepath.Join(f.UnitDir, join.NodeUnit) }

// WriteNodeFiles writes a joined node's files: the cluster CA, the
// kubelet-serving CA, the kubelet client certificate (kubelet's rotating
// layout), the kubelet kubeconfig, the unit and, last, the node config that
// marks the node as joined. Both `node-agent join` and the control plane (for
// its own host) use it, so every node has the same layout. It returns the
// client certificate's path.
func WriteNodeFiles(n *config.Node, f NodeFiles, caPEM, kubeletServingCAPEM []byte, cert *KubeletClientCert) (string, error) {
	// Marked ours (when new or empty), so reset and uninstall may remove it.
	if _, err := config.ClaimDataDir(n.DataDir, "pki"); err != nil {
		return "", fmt.Errorf("failed to create %s: %v", n.DataDir, err)
	}
	if err := fsutil.WriteFileAtomic(n.CAFile(), caPEM, 0o644); err != nil {
		return "", fmt.Errorf("failed to write %s: %v", n.CAFile(), err)
	}
	if _, err := WriteKubeletServingCA(n, kubeletServingCAPEM); err != nil {
		return "", err
	}
	certFile, err := StoreKubeletClientCert(n.PKIDir(), cert)
	if err != nil {
		return "", err
	}
	kubeconfig, err := KubeletKubeconfig(n.Server, n.CAFile(), certFile)
	if err != nil {
		return "", err
	}
	if err := fsutil.WriteFileAtomic(n.KubeletKubeconfig(), kubeconfig, 0o600); err != nil {
		return "", fmt.Errorf("failed to write %s: %v", n.KubeletKubeconfig(), err)
	}
	if err := WriteUnit(f); err != nil {
		return "", err
	}
	data, err := config.MarshalNode(n)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(f.ConfigFile), 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %v", filepath.Dir(f.ConfigFile), err)
	}
	if err := fsutil.WriteFileAtomic(f.ConfigFile, data, 0o644); err != nil {
		return "", fmt.Errorf("failed to write %s: %v", f.ConfigFile, err)
	}
	return certFile, nil
}

// Check returns the node's current kubelet client certificate when its
// config file, its kubeconfig and a client certificate for its name that
// chains to caFile and has not expired are all in place; else why not. Both
// "is this node already joined?" questions (node-agent join, and the control
// plane for its own host) are answered here.
func Check(n *config.Node, configFile, caFile string, now time.Time) (*x509.Certificate, error) {
	for _, f := range []string{configFile, n.KubeletKubeconfig()} {
		if _, err := os.Stat(f); err != nil {
			return nil, err
		}
	}
	return LoadKubeletClientCert(n.PKIDir(), caFile, n.NodeName, now)
}

// WriteUnit writes node-agent's unit unless it already holds f.Unit. It is
// root's only (CIS 4.1.1: systemd reads units as root), and an existing
// file's mode is corrected too.
func WriteUnit(f NodeFiles) error {
	if err := os.MkdirAll(f.UnitDir, 0o755); err != nil {
		return fmt.Errorf("failed to create %s: %v", f.UnitDir, err)
	}
	if err := fsutil.WriteIfChanged(f.UnitPath(), f.Unit, 0o600); err != nil {
		return fmt.Errorf("failed to write %s: %v", f.UnitPath(), err)
	}
	return nil
}
