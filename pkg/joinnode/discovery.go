package joinnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pubkeypin"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

// discoveryPath is the only request discovery makes, without credentials.
const discoveryPath = "/api/v1/namespaces/kube-public/configmaps/" + bootstrapapi.ConfigMapClusterInfo

// MaxClockSkew is how far this node's clock may be from the API server's.
// The cluster's signer backdates the certificates it issues by 5 minutes;
// beyond that a node's TLS fails ("certificate has expired or is not yet
// valid") without saying that the clock is the cause.
const MaxClockSkew = 5 * time.Minute

// Discovery finds and authenticates the cluster before any credential is sent.
type Discovery struct {
	// Server is the API server URL given by the user.
	Server string
	Token  join.BootstrapToken
	// CACertHashes are the accepted CA pins (sha256:HEX); at least one.
	CACertHashes []string
	// SignatureWait is how long to wait for the token's signature to appear
	// in cluster-info (bootstrapsigner adds it shortly after the token).
	SignatureWait time.Duration
	// ConnectTimeout is how long to retry while the server is unreachable.
	ConnectTimeout time.Duration
	// Now is this node's clock, compared with the server's (HTTP Date);
	// nil means time.Now.
	Now func() time.Time
}

// DiscoveredCluster is what discovery established: the server and its CA.
type DiscoveredCluster struct {
	Server string
	CAPEM  []byte
	CA     []*x509.Certificate
}

// Discover fetches kube-public/cluster-info anonymously, checks its JWS
// signature with the token and its CA against the pins, then fetches it again
// over TLS verified by that CA and requires the same content. Every failure is
// one line saying what is wrong.
func (d *Discovery) Discover(ctx context.Context) (*DiscoveredCluster, error) {
	pins := pubkeypin.NewSet()
	if len(d.CACertHashes) == 0 {
		return nil, errors.New("no --ca-cert-hash given: the cluster CA must be pinned (sha256:HEX, printed by `vcluster-standalone token create`)")
	}
	for _, h := range d.CACertHashes {
		if err := pins.Allow(h); err != nil {
			return nil, fmt.Errorf("invalid --ca-cert-hash %q: must be sha256: followed by 64 hex digits", h)
		}
	}
	if _, err := ParseServer(d.Server); err != nil {
		return nil, err
	}

	// 1. Anonymous, unverified TLS: nothing is trusted and nothing is sent.
	insecure := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // authenticated below by JWS + pin
	}}
	kubeconfig, err := d.fetchSigned(ctx, insecure)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil || len(cfg.Clusters) != 1 {
		return nil, fmt.Errorf("cluster-info holds no usable kubeconfig (one cluster expected); the control plane is misconfigured")
	}
	var caPEM []byte
	for _, c := range cfg.Clusters {
		caPEM = c.CertificateAuthorityData
	}
	cas, err := certutil.ParseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster-info holds no valid CA certificate: %v", err)
	}
	if err := pins.CheckAny(cas); err != nil {
		return nil, fmt.Errorf("CA pin mismatch: the cluster CA served by %s matches none of the --ca-cert-hash values given; check the hash and the server address (nothing was sent)", d.Server)
	}

	// 2. Again over TLS verified by the pinned CA: the server holds its key.
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	secure := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	again, err := d.getClusterInfo(ctx, secure)
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &hostname):
		return nil, fmt.Errorf("the API server's certificate is not valid for %s (it names %s); use the server address `vcluster-standalone token create` printed, or add it with --tls-san",
			hostname.Host, strings.Join(append(hostname.Certificate.DNSNames, ipStrings(hostname.Certificate.IPAddresses)...), ", "))
	case err != nil:
		return nil, fmt.Errorf("the API server's certificate does not verify against the pinned cluster CA: %v", singleLine(err))
	}
	if again.Data[bootstrapapi.KubeConfigKey] != kubeconfig {
		return nil, fmt.Errorf("cluster-info changed between the unverified and the verified fetch; not trusting %s", d.Server)
	}
	return &DiscoveredCluster{Server: strings.TrimSuffix(d.Server, "/"), CAPEM: caPEM, CA: cas}, nil
}

// fetchSigned returns the cluster-info kubeconfig once it carries a valid
// signature for the token, waiting up to SignatureWait for one to appear.
func (d *Discovery) fetchSigned(ctx context.Context, client *http.Client) (string, error) {
	sigKey := bootstrapapi.JWSSignatureKeyPrefix + d.Token.ID
	deadline := time.Now().Add(d.SignatureWait)
	for {
		cm, err := d.getClusterInfo(ctx, client)
		if err != nil {
			return "", err
		}
		kubeconfig := cm.Data[bootstrapapi.KubeConfigKey]
		if kubeconfig == "" {
			return "", fmt.Errorf("cluster-info on %s has no %q key; the control plane is not set up for joining", d.Server, bootstrapapi.KubeConfigKey)
		}
		if sig, ok := cm.Data[sigKey]; ok && sig != "" {
			if !jws.DetachedTokenIsValid(sig, kubeconfig, d.Token.ID, d.Token.Secret) {
				return "", fmt.Errorf("cluster-info signature for token %q does not verify: wrong token secret, or the content was tampered with; not trusting %s (nothing was sent)", d.Token.ID, d.Server)
			}
			return kubeconfig, nil
		}
		if !time.Now().Before(deadline) {
			return "", fmt.Errorf("token %q is unknown or expired: cluster-info on %s carries no signature for it; create a new one with `vcluster-standalone token create`", d.Token.ID, d.Server)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// getClusterInfo GETs the ConfigMap without any credential, retrying
// connection errors for ConnectTimeout.
func (d *Discovery) getClusterInfo(ctx context.Context, client *http.Client) (*corev1.ConfigMap, error) {
	deadline := time.Now().Add(d.ConnectTimeout)
	url := strings.TrimSuffix(d.Server, "/") + discoveryPath
	for {
		cm, retry, err := d.getOnce(ctx, client, url)
		if err == nil {
			return cm, nil
		}
		if !retry || !time.Now().Before(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (d *Discovery) getOnce(ctx context.Context, client *http.Client, url string) (cm *corev1.ConfigMap, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var unknownAuthority x509.UnknownAuthorityError
		var hostname x509.HostnameError
		if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) {
			return nil, false, err
		}
		return nil, true, fmt.Errorf("cannot reach the API server: %v", singleLine(err))
	}
	defer resp.Body.Close()
	// The first, unverified fetch needs no trust in time; the verified one
	// and everything after it do: say so before a TLS error would.
	if err := d.checkClock(resp.Header.Get("Date")); err != nil {
		return nil, false, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, true, fmt.Errorf("cannot read cluster-info: %v", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, fmt.Errorf("the API server has no kube-public/cluster-info ConfigMap; is it a vcluster-standalone control plane that finished starting?")
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, false, fmt.Errorf("the API server refuses anonymous access to kube-public/cluster-info (HTTP %d); the control plane is not set up for joining", resp.StatusCode)
	case resp.StatusCode >= 500:
		return nil, true, fmt.Errorf("the API server answered HTTP %d for cluster-info", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, false, fmt.Errorf("the API server answered HTTP %d for cluster-info", resp.StatusCode)
	}
	cm = &corev1.ConfigMap{}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(cm); err != nil {
		return nil, false, fmt.Errorf("cluster-info is not a ConfigMap: %v", err)
	}
	return cm, false, nil
}

// checkClock compares this node's clock with the server's HTTP Date header
// (one-second resolution); a response without one is not judged.
func (d *Discovery) checkClock(date string) error {
	server, err := http.ParseTime(date)
	if err != nil {
		return nil
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	local := now()
	skew := local.Sub(server)
	if skew.Abs() <= MaxClockSkew {
		return nil
	}
	direction := "ahead of"
	if skew < 0 {
		direction = "behind"
	}
	return fmt.Errorf("this node's clock is %s %s the API server's (node %s, server %s; at most %s allowed): set the time (e.g. `timedatectl set-ntp true`) and join again (nothing was sent)",
		skew.Abs().Round(time.Second), direction, local.UTC().Format(time.RFC3339), server.UTC().Format(time.RFC3339), MaxClockSkew)
}

// ParseServer checks an API server URL given by the user.
func ParseServer(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("invalid server %q: must be the API server's https:// URL such as https://192.0.2.10:6443", s)
	}
	return u, nil
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func singleLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
