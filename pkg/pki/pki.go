package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// Names of the certificate authorities.
const (
	ClusterCA    = "ca"
	FrontProxyCA = "front-proxy-ca"
	EtcdCA       = "etcd/ca"
	// KubeletServingCA signs only kubelet serving certificates: the API
	// server verifies kubelets with it, and no certificate it signs is
	// trusted by pods or by clients of the API server.
	KubeletServingCA = "kubelet-serving-ca"
)

// JoinEndpoint is the leaf the join endpoint serves with.
const JoinEndpoint = "join-endpoint"

// Names of the other leaves (file bases below the pki dir, and for the
// client certificates the names of their kubeconfigs too). Components are
// configured with these names, never with literals that could drift.
const (
	APIServer               = "apiserver"
	APIServerKubeletClient  = "apiserver-kubelet-client"
	APIServerEtcdClient     = "apiserver-etcd-client"
	FrontProxyClient        = "front-proxy-client"
	EtcdServer              = "etcd/server"
	EtcdPeer                = "etcd/peer"
	SuperAdmin              = "super-admin"
	Admin                   = "admin"
	ControllerManager       = "controller-manager"
	Scheduler               = "scheduler"
	ControllerManagerServer = "controller-manager-server"
	SchedulerServer         = "scheduler-server"
)

// The service-account token signing key pair, below the pki dir.
const (
	ServiceAccountKey       = "sa.key"
	ServiceAccountPublicKey = "sa.pub"
)

// Identities the control plane's own clients authenticate as.
const (
	SuperAdminGroup   = "system:masters"
	ClusterAdminGroup = "vcluster-standalone:cluster-admins"
	AdminUser         = "kubernetes-admin"
	KubeletClientUser = "kube-apiserver-kubelet-client"
)

// The control plane's own controllers, each with its own client certificate
// (leaf name = kubeconfig name) and only the rights it uses.
const (
	CSRApprover = "csr-approver" // approves kubelet client and serving CSRs
	JoinObjects = "join-objects" // cluster-info and the RBAC of joining nodes
	Addons      = "addons"       // node settings, CoreDNS, the local node's role
	CSI         = "csi"          // the CSI driver's controller: volumes, PVs, snapshots, capacity
)

// ControllerUser is the user name a controller's certificate carries.
func ControllerUser(name string) string { return "vcluster-standalone:" + name }

var (
	serverUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	bothUsage   = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

// Params are the host facts the certificates depend on.
type Params struct {
	Dir           string // the pki directory, e.g. <data-dir>/pki
	Hostname      string
	AdvertiseIP   net.IP
	ServiceIP     net.IP // first address of the service CIDR
	ClusterDomain string
	ExtraSANs     []string
	Lifetimes     Lifetimes
}

// CertSpec describes one leaf certificate; the PKI is this table.
type CertSpec struct {
	Name          string // file base below the pki dir, e.g. "etcd/server"
	CA            string
	CommonName    string
	Organizations []string
	DNSNames      []string
	IPs           []net.IP
	Usages        []x509.ExtKeyUsage
}

// CAs lists every certificate authority.
var CAs = []string{ClusterCA, FrontProxyCA, EtcdCA, KubeletServingCA}

// Leaves returns the table of leaf certificates for p.
func Leaves(p Params) []CertSpec {
	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	apiDNS := []string{p.Hostname, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + p.ClusterDomain}
	apiIPs := []net.IP{p.AdvertiseIP, net.ParseIP("127.0.0.1"), p.ServiceIP}
	for _, san := range p.ExtraSANs {
		if ip := net.ParseIP(san); ip != nil {
			apiIPs = append(apiIPs, ip)
		} else {
			apiDNS = append(apiDNS, san)
		}
	}
	joinDNS := []string{p.Hostname}
	joinIPs := []net.IP{p.AdvertiseIP}
	for _, san := range p.ExtraSANs {
		if ip := net.ParseIP(san); ip != nil {
			joinIPs = append(joinIPs, ip)
		} else {
			joinDNS = append(joinDNS, san)
		}
	}
	return []CertSpec{
		{Name: APIServer, CA: ClusterCA, CommonName: "kube-apiserver", DNSNames: dedupe(apiDNS), IPs: dedupeIPs(apiIPs), Usages: serverUsage},
		{Name: APIServerKubeletClient, CA: ClusterCA, CommonName: KubeletClientUser, Usages: clientUsage},
		{Name: APIServerEtcdClient, CA: EtcdCA, CommonName: "kube-apiserver-etcd-client", Usages: clientUsage},
		{Name: FrontProxyClient, CA: FrontProxyCA, CommonName: "front-proxy-client", Usages: clientUsage},
		{Name: EtcdServer, CA: EtcdCA, CommonName: p.Hostname, DNSNames: dedupe([]string{p.Hostname, "localhost"}), IPs: loopback, Usages: bothUsage},
		{Name: EtcdPeer, CA: EtcdCA, CommonName: p.Hostname, DNSNames: dedupe([]string{p.Hostname, "localhost"}), IPs: loopback, Usages: bothUsage},
		{Name: SuperAdmin, CA: ClusterCA, CommonName: "vcluster-standalone-super-admin", Organizations: []string{SuperAdminGroup}, Usages: clientUsage},
		{Name: Admin, CA: ClusterCA, CommonName: AdminUser, Organizations: []string{ClusterAdminGroup}, Usages: clientUsage},
		{Name: ControllerManager, CA: ClusterCA, CommonName: "system:kube-controller-manager", Usages: clientUsage},
		{Name: CSRApprover, CA: ClusterCA, CommonName: ControllerUser(CSRApprover), Usages: clientUsage},
		{Name: JoinObjects, CA: ClusterCA, CommonName: ControllerUser(JoinObjects), Usages: clientUsage},
		{Name: Addons, CA: ClusterCA, CommonName: ControllerUser(Addons), Usages: clientUsage},
		{Name: CSI, CA: ClusterCA, CommonName: ControllerUser(CSI), Usages: clientUsage},
		{Name: Scheduler, CA: ClusterCA, CommonName: "system:kube-scheduler", Usages: clientUsage},
		// Serving certs for the loopback health/metrics ports: issued here
		// (ECDSA) instead of each component generating a self-signed RSA key
		// on every start, and verifiable with the cluster CA.
		{Name: ControllerManagerServer, CA: ClusterCA, CommonName: "kube-controller-manager", DNSNames: []string{"localhost"}, IPs: loopback, Usages: serverUsage},
		{Name: SchedulerServer, CA: ClusterCA, CommonName: "kube-scheduler", DNSNames: []string{"localhost"}, IPs: loopback, Usages: serverUsage},
		// The join endpoint serves install.sh and node-agent; curl pins its
		// public key (JoinEndpointPin), so it needs no CA the node trusts.
		{Name: JoinEndpoint, CA: ClusterCA, CommonName: "vcluster-standalone-join", DNSNames: dedupe(joinDNS), IPs: dedupeIPs(joinIPs), Usages: serverUsage},
	}
}

// Event says what Ensure did with one file: "generated", "renewed: <why>".
type Event struct {
	Name   string
	Action string
}

// Bundle is the loaded PKI.
type Bundle struct {
	Dir       string
	CAs       map[string]*KeyPair
	Leaves    map[string]*KeyPair
	Lifetimes Lifetimes // what Issue issues for
	// Chains are the intermediates each CA's leaves carry (rotate.go).
	Chains map[string][]*x509.Certificate
	// Trust is each CA's trust bundle (BundleName): the CA, and during a
	// rotation the outgoing CA after it.
	Trust map[string][]*x509.Certificate
}

// Path returns the path of a PKI file, e.g. Path("apiserver", ".crt").
func (b *Bundle) Path(name, ext string) string {
	return filepath.Join(b.Dir, name+ext)
}

// Ensure loads the PKI in p.Dir, creating what is missing and renewing leaves
// that expire within p.Lifetimes' threshold, were issued for longer than its
// lifetime, no longer match the table, or were not signed by the current CA.
// Existing valid files are left untouched. It runs at start and, while the
// control plane serves, on every periodic check: a renewal re-signs the
// leaf's existing key and replaces only its .crt, by one rename, so a
// component reading the pair at any moment gets a matching one.
func Ensure(p Params, now time.Time) (*Bundle, []Event, error) {
	b := &Bundle{Dir: p.Dir, CAs: map[string]*KeyPair{}, Leaves: map[string]*KeyPair{}, Lifetimes: p.Lifetimes,
		Chains: map[string][]*x509.Certificate{}, Trust: map[string][]*x509.Certificate{}}
	var events []Event
	for _, name := range CAs {
		kp, ok, err := loadKeyPair(b.Path(name, ""))
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			if kp, err = newCA(strings.ReplaceAll(name, "/", "-")); err != nil {
				return nil, nil, fmt.Errorf("failed to generate CA %s: %w", name, err)
			}
			if err := writeKeyPair(b.Path(name, ""), kp); err != nil {
				return nil, nil, fmt.Errorf("failed to write CA %s: %w", name, err)
			}
			events = append(events, Event{Name: name, Action: "generated"})
		}
		b.CAs[name] = kp
		trust, chain, err := ensureBundle(p.Dir, name, kp)
		if err != nil {
			return nil, nil, err
		}
		b.Trust[name], b.Chains[name] = trust, chain
	}
	for _, spec := range Leaves(p) {
		ca := b.CAs[spec.CA]
		kp, ok, err := loadKeyPair(b.Path(spec.Name, ""))
		if err != nil {
			return nil, nil, err
		}
		reason := "generated"
		if ok {
			reason = renewalReason(spec, kp, ca.Cert, now, p.Lifetimes)
			if reason == "" && !sameChain(kp.Chain, b.Chains[spec.CA]) {
				reason = "CA chain changed"
			}
			if reason == "" {
				b.Leaves[spec.Name] = kp
				continue
			}
			reason = "renewed: " + reason
		}
		if kp, err = renewLeaf(spec, ca, b.Path(spec.Name, ".key"), now, p.Lifetimes.leaf()); err != nil {
			return nil, nil, err
		}
		kp.Chain = b.Chains[spec.CA]
		if err := writeKeyPair(b.Path(spec.Name, ""), kp); err != nil {
			return nil, nil, fmt.Errorf("failed to write %s: %w", spec.Name, err)
		}
		b.Leaves[spec.Name] = kp
		events = append(events, Event{Name: spec.Name, Action: reason})
	}
	if err := ensureServiceAccountKey(p.Dir); err != nil {
		return nil, nil, err
	}
	return b, events, nil
}

// renewLeaf issues spec's certificate for the key already in keyFile when it
// is a usable one (even if its certificate was lost), else for a fresh key.
// Keeping the key, as kubeadm's `certs renew` does, means a renewal changes
// one file only: etcd and client-go load .crt and .key separately on each
// handshake, and a new key would leave a moment where the two do not match.
// It also keeps the join endpoint's printed pin (of its public key) valid
// for every join line printed before a renewal.
func renewLeaf(spec CertSpec, ca *KeyPair, keyFile string, now time.Time, lifetime time.Duration) (*KeyPair, error) {
	key, err := keyutil.PrivateKeyFromFile(keyFile)
	signer, ok := key.(crypto.Signer)
	if err != nil || !ok || !usableKey(signer) {
		return newLeaf(spec, ca, now, lifetime)
	}
	cert, err := signLeaf(spec, signer, ca, now, lifetime)
	if err != nil {
		return nil, fmt.Errorf("failed to sign %s: %w", spec.Name, err)
	}
	return &KeyPair{Cert: cert, Key: signer}, nil
}

// usableKey accepts the keys this package makes (ECDSA P-256) and RSA of at
// least 2048 bits; anything weaker is replaced rather than kept.
func usableKey(key crypto.Signer) bool {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k.Curve == elliptic.P256()
	case *rsa.PrivateKey:
		return k.N.BitLen() >= 2048
	}
	return false
}

// renewalReason returns why cert must be reissued, or "" if it is fine.
func renewalReason(spec CertSpec, kp *KeyPair, ca *x509.Certificate, now time.Time, l Lifetimes) string {
	cert := kp.Cert
	switch {
	case !publicKeyMatches(cert, kp.Key):
		return "certificate does not match its key"
	case cert.CheckSignatureFrom(ca) != nil:
		return "not signed by the current CA"
	case cert.NotAfter.Sub(now) <= l.renewBefore():
		return fmt.Sprintf("expires %s", cert.NotAfter.UTC().Format(time.RFC3339))
	case cert.NotAfter.Sub(cert.NotBefore) > l.leaf()+notBeforeSkew && cert.NotAfter.Before(ca.NotAfter):
		// The configured lifetime was lowered: apply it now, not in a year.
		return fmt.Sprintf("issued for %s, longer than the configured %s", cert.NotAfter.Sub(cert.NotBefore)-notBeforeSkew, l.leaf())
	case cert.Subject.CommonName != spec.CommonName || !sameStrings(cert.Subject.Organization, spec.Organizations):
		return "subject changed"
	case !sameStrings(cert.DNSNames, spec.DNSNames) || !sameIPs(cert.IPAddresses, spec.IPs):
		return "SANs changed"
	}
	return ""
}

// publicKeyMatches reports whether cert is for key.
func publicKeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// ensureServiceAccountKey creates the token signing key pair (sa.key/sa.pub).
func ensureServiceAccountKey(dir string) error {
	keyPath, pubPath := filepath.Join(dir, ServiceAccountKey), filepath.Join(dir, ServiceAccountPublicKey)
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return nil
		}
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("failed to write service-account key: %w", err)
	}
	return fsutil.WriteFileAtomic(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func dedupeIPs(in []net.IP) []net.IP {
	seen := map[string]bool{}
	var out []net.IP
	for _, ip := range in {
		if ip != nil && !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	return out
}

// CertStatus is one certificate file and its expiry.
type CertStatus struct {
	Name     string
	Subject  string
	NotAfter time.Time
	IsCA     bool
	Err      error
}

// Check lists every certificate of the PKI in dir with its expiry, CAs first.
func Check(dir string) []CertStatus {
	var out []CertStatus
	names := append([]string{}, CAs...)
	var leaves []string
	for _, spec := range Leaves(Params{}) {
		leaves = append(leaves, spec.Name)
	}
	sort.Strings(leaves)
	for _, name := range append(names, leaves...) {
		st := CertStatus{Name: name, IsCA: slices.Contains(CAs, name)}
		kp, ok, err := loadKeyPair(filepath.Join(dir, name))
		switch {
		case err != nil:
			st.Err = err
		case !ok:
			st.Err = fmt.Errorf("missing")
		default:
			st.Subject = kp.Cert.Subject.CommonName
			st.NotAfter = kp.Cert.NotAfter
		}
		out = append(out, st)
	}
	return out
}

// Attention says what a certificate of Check needs at now, or "" if
// nothing: a missing or unreadable file, expiry, a leaf due for renewal
// (the running control plane renews it at its next check), or a CA with less
// than CAWarnBefore left, which no renewal extends: it must be rotated.
func (s CertStatus) Attention(now time.Time, l Lifetimes) string {
	left := s.NotAfter.Sub(now)
	switch {
	case s.Err != nil:
		return s.Err.Error()
	case left <= 0:
		return "expired"
	case s.IsCA && left < CAWarnBefore:
		return fmt.Sprintf("warning: CA expires in %d days, rotate it", int(left.Hours()/24))
	case !s.IsCA && left <= l.renewBefore():
		return "due for renewal"
	}
	return ""
}
