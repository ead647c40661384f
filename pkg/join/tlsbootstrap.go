package join

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
)

// Kubelet client certificates: the identity the Node authorizer and
// NodeRestriction know, and the signer whose CSRs the control plane approves
// for bootstrap tokens (nodeclient) and for the node itself (selfnodeclient).
const (
	NodeUserPrefix          = "system:node:"
	NodesGroup              = "system:nodes"
	kubeletClientPairPrefix = "kubelet-client"
)

// BootstrapClient returns a client that authenticates with the bootstrap
// token over TLS verified by the discovered CA. Only call it after Discover.
func BootstrapClient(cluster *DiscoveredCluster, token BootstrapToken) (kubernetes.Interface, error) {
	cfg := &rest.Config{
		Host:            cluster.Server,
		BearerToken:     token.Full(),
		TLSClientConfig: rest.TLSClientConfig{CAData: cluster.CAPEM},
		Timeout:         30 * time.Second,
		UserAgent:       "node-agent/join",
	}
	return kubernetes.NewForConfig(cfg)
}

// CheckNodeNameFree refuses a name held by a Node that is Ready: another
// machine uses it. A deleted Node, or one that is not Ready (this machine
// before a reset), does not block a join. Without the right to read Nodes
// the check is skipped.
func CheckNodeNameFree(ctx context.Context, client kubernetes.Interface, nodeName string) error {
	node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return nil // not found, or not allowed to look: the CSR decides
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return fmt.Errorf("a Node named %q already exists and is Ready: another machine uses this name; pass --node-name, or remove the old one with `vcluster-standalone kubectl delete node %s`", nodeName, nodeName)
		}
	}
	return nil
}

// KubeletClientCert is an issued kubelet client certificate and its key.
type KubeletClientCert struct {
	CSRName string
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
}

// RequestKubeletClientCert creates a fresh ECDSA P-256 key and a CSR for
// system:node:<nodeName> (O=system:nodes) with the kubelet client signer,
// waits until it is approved and issued, and checks what came back.
func RequestKubeletClientCert(ctx context.Context, client kubernetes.Interface, nodeName string, cas []*x509.Certificate) (*KubeletClientCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, err
	}
	subject := &pkix.Name{CommonName: NodeUserPrefix + nodeName, Organization: []string{NodesGroup}}
	csrPEM, err := certutil.MakeCSR(key, subject, nil, nil)
	if err != nil {
		return nil, err
	}
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	name, uid, err := csr.RequestCertificateWithContext(ctx, client, csrPEM, "", certificatesv1.KubeAPIServerClientKubeletSignerName, nil, usages, key)
	if err != nil {
		return nil, csrCreateError(err, nodeName)
	}
	certPEM, err := csr.WaitForCertificate(ctx, client, name, uid)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("certificate signing request %s for %s%s was not approved in time; approve it with `vcluster-standalone kubectl certificate approve %s`", name, NodeUserPrefix, nodeName, name)
		}
		return nil, fmt.Errorf("certificate signing request %s for %s%s: %v", name, NodeUserPrefix, nodeName, singleLine(err))
	}
	cert, err := checkKubeletClientCert(certPEM, nodeName, cas)
	if err != nil {
		return nil, fmt.Errorf("certificate issued for %s: %v", name, err)
	}
	return &KubeletClientCert{CSRName: name, CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, nil
}

func csrCreateError(err error, nodeName string) error {
	var status apierrors.APIStatus
	msg := singleLine(err)
	if errors.As(err, &status) {
		msg = status.Status().Message
	}
	switch {
	case apierrors.IsUnauthorized(err):
		return errors.New("the API server rejected the credentials: a bootstrap token that expired or was deleted after discovery (create a new one with `vcluster-standalone token create`), or a revoked certificate")
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the API server refused a certificate request for %s%s: %s", NodeUserPrefix, nodeName, msg)
	}
	return fmt.Errorf("failed to create the certificate signing request: %s", msg)
}

// checkKubeletClientCert verifies the issued certificate names this node,
// is for client auth and chains to the cluster CA.
func checkKubeletClientCert(certPEM []byte, nodeName string, cas []*x509.Certificate) (*x509.Certificate, error) {
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if cert.Subject.CommonName != NodeUserPrefix+nodeName || !slices.Contains(cert.Subject.Organization, NodesGroup) {
		return nil, fmt.Errorf("subject is %s, want CN=%s%s, O=%s", cert.Subject, NodeUserPrefix, nodeName, NodesGroup)
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
	cert, err := checkKubeletClientCert(pair, nodeName, cas)
	if err != nil {
		return nil, err
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("expired on %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}
