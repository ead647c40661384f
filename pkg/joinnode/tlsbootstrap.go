package joinnode

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/nodecreds"
)

// BootstrapClient returns a client that authenticates with the bootstrap
// token over TLS verified by the discovered CA. Only call it after Discover.
func BootstrapClient(cluster *DiscoveredCluster, token join.BootstrapToken) (kubernetes.Interface, error) {
	cfg := &rest.Config{
		Host:            cluster.Server,
		BearerToken:     token.Full(),
		TLSClientConfig: rest.TLSClientConfig{CAData: cluster.CAPEM},
		Timeout:         30 * time.Second,
		UserAgent:       "node-agent/join",
	}
	return kubernetes.NewForConfig(cfg)
}

// CheckNodeNameFree refuses a name a Node holds (join.NodeNameInUse), before
// any CSR is made: the control plane would deny the CSR for the same reason.
// Without the right to read Nodes the check is left to the control plane.
func CheckNodeNameFree(ctx context.Context, client kubernetes.Interface, nodeName string) error {
	node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return nil // not found, or not allowed to look: the CSR decides
	}
	return join.NodeNameInUse(node)
}

// RequestKubeletClientCert creates a fresh ECDSA P-256 key and a CSR for
// system:node:<nodeName> (O=system:nodes) with the kubelet client signer,
// waits until it is approved and issued, and checks what came back.
func RequestKubeletClientCert(ctx context.Context, client kubernetes.Interface, nodeName string, cas []*x509.Certificate) (*nodecreds.KubeletClientCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, err
	}
	subject := &pkix.Name{CommonName: join.NodeUserPrefix + nodeName, Organization: []string{join.NodesGroup}}
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
			return nil, fmt.Errorf("certificate signing request %s for %s%s was not approved in time; approve it with `vcluster-standalone kubectl certificate approve %s`", name, join.NodeUserPrefix, nodeName, name)
		}
		return nil, fmt.Errorf("certificate signing request %s for %s%s: %v", name, join.NodeUserPrefix, nodeName, singleLine(err))
	}
	cert, err := nodecreds.VerifyKubeletClientCert(certPEM, nodeName, cas)
	if err != nil {
		return nil, fmt.Errorf("certificate issued for %s: %v", name, err)
	}
	return &nodecreds.KubeletClientCert{CSRName: name, CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, nil
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
		return fmt.Errorf("the API server refused a certificate request for %s%s: %s", join.NodeUserPrefix, nodeName, msg)
	}
	return fmt.Errorf("failed to create the certificate signing request: %s", msg)
}
