package nodecreds

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

// FetchKubeletServingCA reads the kubelet-serving CA certificate the control
// plane publishes (join.KubeletServingCAConfigMap), with a join token's or a
// node's client, and checks it holds CA certificates only.
func FetchKubeletServingCA(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	ns, name := join.KubeletServingCANamespace, join.KubeletServingCAConfigMap
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to read the kubelet-serving CA from ConfigMap %s/%s: %w", ns, name, err)
	}
	caPEM := []byte(cm.Data[join.KubeletServingCAKey])
	if err := checkCAs(caPEM); err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s key %s: %v", ns, name, join.KubeletServingCAKey, err)
	}
	return caPEM, nil
}

func checkCAs(caPEM []byte) error {
	certs, err := certutil.ParseCertsPEM(caPEM)
	if err != nil {
		return fmt.Errorf("not a PEM certificate: %v", err)
	}
	for _, c := range certs {
		if !c.IsCA {
			return fmt.Errorf("%s is not a CA certificate", c.Subject)
		}
	}
	return nil
}

// WriteKubeletServingCA writes the kubelet-serving CA certificate to the
// node's pki dir (0644: it is no secret) unless it already holds it; it
// reports whether the file changed.
func WriteKubeletServingCA(n *config.Node, caPEM []byte) (bool, error) {
	if err := checkCAs(caPEM); err != nil {
		return false, fmt.Errorf("kubelet-serving CA: %v", err)
	}
	path := n.KubeletServingCAFile()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, caPEM) {
		return false, nil
	}
	if err := fsutil.WriteFileAtomic(path, caPEM, 0o644); err != nil {
		return false, fmt.Errorf("failed to write %s: %v", path, err)
	}
	return true, nil
}

// RefreshKubeletServingCA fetches the published kubelet-serving CA and
// writes it when it changed (a CA rotation reaches the node this way).
func RefreshKubeletServingCA(ctx context.Context, client kubernetes.Interface, n *config.Node) (bool, error) {
	caPEM, err := FetchKubeletServingCA(ctx, client)
	if err != nil {
		return false, err
	}
	return WriteKubeletServingCA(n, caPEM)
}

// DropUnverifiableServingCert removes the kubelet's serving pair when it does
// not chain to the node's kubelet-serving CA: a certificate signed by the
// cluster CA before that CA existed (an upgrade), or by a CA since rotated
// away. The API server would refuse it for exec and logs until the kubelet
// rotated it months later; without it, the kubelet asks for a new one at
// start. It reports whether it removed anything.
func DropUnverifiableServingCert(n *config.Node) (bool, error) {
	cas, err := certutil.CertsFromFile(n.KubeletServingCAFile())
	if err != nil {
		return false, nil // no CA yet: nothing to judge the certificate by
	}
	certs, err := certutil.CertsFromFile(n.KubeletServingCertFile())
	if err != nil {
		return false, nil // none yet, or unreadable: the kubelet requests one
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		return false, nil
	}
	// The kubelet's store: kubelet-server-<time>.pem and the -current link.
	pairs, err := filepath.Glob(filepath.Join(filepath.Dir(n.KubeletServingCertFile()), "kubelet-server-*.pem"))
	if err != nil {
		return false, err
	}
	for _, p := range pairs {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return false, err
		}
	}
	return true, nil
}
