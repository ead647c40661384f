package pki

import (
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"
)

// ClusterName is the cluster's name in generated kubeconfigs.
const ClusterName = "vcluster-standalone"

// Kubeconfig returns a kubeconfig for server that authenticates with the
// client certificate of the leaf named user, trusting the cluster CA.
func (b *Bundle) Kubeconfig(server, user string) ([]byte, error) {
	client := b.Leaves[user]
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(client.Key)
	if err != nil {
		return nil, err
	}
	context := user + "@" + ClusterName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ClusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: b.TrustPEM(ClusterCA)}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: EncodeChain(client), ClientKeyData: keyPEM}
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: ClusterName, AuthInfo: user}
	cfg.CurrentContext = context
	return clientcmd.Write(*cfg)
}

// TrustPEM is the PEM of ca's trust bundle (see Bundle.Trust).
func (b *Bundle) TrustPEM(ca string) []byte {
	var out []byte
	for _, c := range b.Trust[ca] {
		out = append(out, EncodeCert(c)...)
	}
	return out
}

// FileKubeconfig is Kubeconfig for the control plane's own components: it
// names the cluster CA's trust bundle and the client pair by path instead of
// embedding them, so client-go reloads a renewed certificate (it does so only
// for files) and, during a CA rotation, the bundle, in a process that keeps
// running.
func (b *Bundle) FileKubeconfig(server, user string) ([]byte, error) {
	context := user + "@" + ClusterName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ClusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: b.Path(BundleName(ClusterCA), ".crt")}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: b.Path(user, ".crt"), ClientKey: b.Path(user, ".key")}
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: ClusterName, AuthInfo: user}
	cfg.CurrentContext = context
	return clientcmd.Write(*cfg)
}
