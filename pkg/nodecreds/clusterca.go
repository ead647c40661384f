package nodecreds

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// FetchClusterCA reads the cluster CA trust bundle the control plane
// publishes in kube-public/cluster-info (during a CA rotation the new CA and
// the old one). anonymous must be a client without credentials: cluster-info
// is readable anonymously only; its TLS is verified with the node's current
// CA file, which authenticates what it returns.
func FetchClusterCA(ctx context.Context, anonymous kubernetes.Interface) ([]byte, error) {
	cm, err := anonymous.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to read kube-public/cluster-info: %w", err)
	}
	cfg, err := clientcmd.Load([]byte(cm.Data[bootstrapapi.KubeConfigKey]))
	if err != nil || len(cfg.Clusters) != 1 {
		return nil, fmt.Errorf("kube-public/cluster-info holds no valid kubeconfig")
	}
	for _, c := range cfg.Clusters {
		if err := checkCAs(c.CertificateAuthorityData); err != nil {
			return nil, fmt.Errorf("kube-public/cluster-info: %v", err)
		}
		return c.CertificateAuthorityData, nil
	}
	return nil, nil
}

// RefreshClusterCA writes the published cluster CA bundle to the node's CA
// file when it changed; the kubelet (client CA and API server trust),
// kube-proxy and node-agent's own client re-read that file. It reports
// whether the file changed.
func RefreshClusterCA(ctx context.Context, anonymous kubernetes.Interface, n *config.Node) (bool, error) {
	caPEM, err := FetchClusterCA(ctx, anonymous)
	if err != nil {
		return false, err
	}
	if old, err := os.ReadFile(n.CAFile()); err == nil && bytes.Equal(old, caPEM) {
		return false, nil
	}
	if err := fsutil.WriteFileAtomic(n.CAFile(), caPEM, 0o644); err != nil {
		return false, fmt.Errorf("failed to write %s: %v", n.CAFile(), err)
	}
	return true, nil
}

// Trust is what the node's files say it trusts and uses (see
// join.TrustReport). loadedAt is when the node's clients first read the CA
// file (node-agent's start): a file older than that was read as it is, so
// Since is left zero.
func Trust(n *config.Node, loadedAt time.Time, kubeletTrusted []string) (join.TrustReport, error) {
	r := join.TrustReport{KubeletTrusted: kubeletTrusted}
	st, err := os.Stat(n.CAFile())
	if err != nil {
		return r, err
	}
	cas, err := certutil.CertsFromFile(n.CAFile())
	if err != nil {
		return r, err
	}
	if st.ModTime().After(loadedAt) {
		r.Since = st.ModTime().UTC()
	}
	for _, ca := range cas {
		r.Trusted = append(r.Trusted, pki.CAPin(ca))
	}
	certs, err := certutil.CertsFromFile(filepath.Join(n.PKIDir(), kubeletClientPairPrefix+"-current.pem"))
	if err != nil {
		return r, nil // no client certificate yet: nothing signed by any CA
	}
	for _, ca := range cas {
		if pki.SignedBy(certs[0], ca) {
			r.KubeletClientCA = pki.CAPin(ca)
		}
	}
	return r, nil
}

// ReportTrust records Trust in the node's TrustAnnotation (a node may
// annotate its own Node).
func ReportTrust(ctx context.Context, client kubernetes.Interface, n *config.Node, loadedAt time.Time, kubeletTrusted []string) error {
	r, err := Trust(n, loadedAt, kubeletTrusted)
	if err != nil {
		return err
	}
	value, err := json.Marshal(r)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{join.TrustAnnotation: string(value)}}})
	if err != nil {
		return err
	}
	if _, err := client.CoreV1().Nodes().Patch(ctx, n.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("failed to report the node's CA trust: %w", err)
	}
	return nil
}

// KubeletClientCertOfOutgoingCA reports whether the kubelet's current client
// certificate is signed by a CA of the node's bundle other than its first
// (during a CA rotation the first is the new CA, the others are retiring).
func KubeletClientCertOfOutgoingCA(n *config.Node) bool {
	cas, err := certutil.CertsFromFile(n.CAFile())
	if err != nil || len(cas) < 2 {
		return false
	}
	certs, err := certutil.CertsFromFile(filepath.Join(n.PKIDir(), kubeletClientPairPrefix+"-current.pem"))
	if err != nil {
		return false
	}
	return !pki.SignedBy(certs[0], cas[0]) && slices.ContainsFunc(cas[1:], func(ca *x509.Certificate) bool { return pki.SignedBy(certs[0], ca) })
}
