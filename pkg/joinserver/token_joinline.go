package joinserver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// JoinLine holds what a node needs to join; it renders the forms that
// `token create` prints.
type JoinLine struct {
	Host        string // the control plane's advertise address
	APIPort     int
	JoinPort    int
	Token       string   // id.secret
	CAHashes    []string // sha256:<hex> pins of the cluster CAs: one, or two during a CA rotation
	EndpointPin string   // sha256//<base64>, the join endpoint's public-key pin
}

// APIServer is the API server URL nodes join.
func (j JoinLine) APIServer() string {
	return "https://" + net.JoinHostPort(j.Host, strconv.Itoa(j.APIPort))
}

// EndpointURL is the join endpoint's base URL.
func (j JoinLine) EndpointURL() string {
	return "https://" + net.JoinHostPort(j.Host, strconv.Itoa(j.JoinPort))
}

// NodeAgentCommand is the join command for a machine with node-agent
// installed; the token goes in node-agent's environment, not its arguments.
func (j JoinLine) NodeAgentCommand() string {
	return fmt.Sprintf("%s=%s node-agent join --server %s%s", join.NodeAgentTokenEnv, j.Token, j.APIServer(), j.hashFlags())
}

// JoinArgs are install.sh's join flags, free of quotes so that
// `install.sh --binary-dir DIR $(cat file)` works (test/vm/Vagrantfile). They
// hold the token as --token: for scripts on machines without other users.
func (j JoinLine) JoinArgs() string {
	return fmt.Sprintf("--join %s --token %s%s", j.APIServer(), j.Token, j.hashFlags())
}

// InstallArgs are install.sh's flags in the one-line join: download
// node-agent from the join endpoint (pinned), then join. The token is not
// among them: CurlCommand passes it in install.sh's environment.
func (j JoinLine) InstallArgs() string {
	return fmt.Sprintf("--url %s/bin --pinned-pubkey '%s' --join %s%s", j.EndpointURL(), j.EndpointPin, j.APIServer(), j.hashFlags())
}

// hashFlags is one --ca-cert-hash per pin, each with a leading space: during
// a CA rotation the line works before and after the old CA is retired.
func (j JoinLine) hashFlags() string {
	var b strings.Builder
	for _, h := range j.CAHashes {
		b.WriteString(" --ca-cert-hash " + h)
	}
	return b.String()
}

// CurlCommand is the one-line join. -k only skips the CA check: the pinned
// public key authenticates the endpoint, so curl refuses any other server.
// The token is set for sh alone, so neither curl nor any argv carries it.
func (j JoinLine) CurlCommand() string {
	return fmt.Sprintf("curl -fsSk --pinnedpubkey '%s' %s/install.sh | %s=%s sh -s - %s", j.EndpointPin, j.EndpointURL(), join.InstallTokenEnv, j.Token, j.InstallArgs())
}

// Instructions are what `token create` prints below the token: the
// node-agent line, and the one-line install from the join endpoint unless
// the line has no endpoint pin (the endpoint is off), which it then says.
func (j JoinLine) Instructions() string {
	s := fmt.Sprintf("Join a machine that has node-agent installed, as root:\n\n  %s\n\n", j.NodeAgentCommand())
	if j.EndpointPin == "" {
		return s + "The join endpoint is off (joinEndpoint: false), so this control plane serves no one-line\n" +
			"install: put node-agent on the machine first (install.sh --binary-dir DIR), then run the line above.\n"
	}
	return s + fmt.Sprintf("Or install node-agent from this control plane and join, as root:\n\n  %s\n", j.CurlCommand())
}

// LoadJoinLine builds the join line for token from what the cluster
// publishes in kube-public/cluster-info (API server URL and CA) and the join
// endpoint's certificate, so it matches what nodes will see. With no
// endpointCertFile (the join endpoint is off) the line has no EndpointPin.
func LoadJoinLine(ctx context.Context, client kubernetes.Interface, token string, joinPort int, endpointCertFile string) (JoinLine, error) {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		return JoinLine{}, fmt.Errorf("failed to read kube-public/cluster-info: %w", err)
	}
	cfg, err := clientcmd.Load([]byte(cm.Data[bootstrapapi.KubeConfigKey]))
	if err != nil || len(cfg.Clusters) != 1 {
		return JoinLine{}, fmt.Errorf("kube-public/cluster-info holds no valid kubeconfig; restart the control plane to rewrite it")
	}
	var cluster *clientcmdapi.Cluster
	for _, c := range cfg.Clusters {
		cluster = c
	}
	u, err := url.Parse(cluster.Server)
	if err != nil || u.Hostname() == "" {
		return JoinLine{}, fmt.Errorf("kube-public/cluster-info: invalid server %q", cluster.Server)
	}
	apiPort, err := strconv.Atoi(u.Port())
	if err != nil {
		apiPort = 443
	}
	cas, err := certutil.ParseCertsPEM(cluster.CertificateAuthorityData)
	if err != nil || len(cas) == 0 {
		return JoinLine{}, fmt.Errorf("kube-public/cluster-info holds no CA certificate; restart the control plane to rewrite it")
	}
	line := JoinLine{Host: u.Hostname(), APIPort: apiPort, JoinPort: joinPort, Token: token}
	// cluster-info holds the trust bundle: during a CA rotation the new CA
	// and the old one, so the line pins both.
	for _, ca := range cas {
		line.CAHashes = append(line.CAHashes, pki.CAPin(ca))
	}
	if endpointCertFile == "" {
		return line, nil
	}
	endpoint, err := certutil.CertsFromFile(endpointCertFile)
	if err != nil {
		return JoinLine{}, fmt.Errorf("failed to read the join endpoint certificate: %w", err)
	}
	line.EndpointPin = pki.PublicKeyPin(endpoint[0])
	return line, nil
}
