// Package pki creates and checks the control plane's certificate authorities,
// leaf certificates, service-account keys and kubeconfigs.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// Lifetimes and the renewal threshold of generated certificates. The leaf
// values are the defaults of Lifetimes.
const (
	CALifetime       = 10 * 365 * 24 * time.Hour
	LeafLifetime     = 365 * 24 * time.Hour
	RenewalThreshold = 90 * 24 * time.Hour
	// CAWarnBefore: a CA with less than this left is reported (log, Event,
	// status, certs check) so it is rotated in time.
	CAWarnBefore = 365 * 24 * time.Hour
)

// Lifetimes are how long leaves are issued for and when they are renewed;
// zero values mean LeafLifetime and RenewalThreshold.
type Lifetimes struct {
	Leaf        time.Duration
	RenewBefore time.Duration
}

func (l Lifetimes) leaf() time.Duration {
	if l.Leaf > 0 {
		return l.Leaf
	}
	return LeafLifetime
}

func (l Lifetimes) renewBefore() time.Duration {
	if l.RenewBefore > 0 {
		return l.RenewBefore
	}
	return RenewalThreshold
}

// notBeforeSkew backdates every leaf a little so hosts whose clocks are
// slightly behind accept it at once.
const notBeforeSkew = 5 * time.Minute

// CAPin returns the CA pin in kubeadm's format: sha256:<hex of the SHA-256
// of the CA's DER-encoded SubjectPublicKeyInfo>. Joining nodes compare it.
func CAPin(ca *x509.Certificate) string {
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// PublicKeyPin returns curl's --pinnedpubkey form of cert's key:
// sha256//<base64 of the SHA-256 of the DER-encoded SubjectPublicKeyInfo>.
func PublicKeyPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

// newKey returns an ECDSA P-256 key: fast to generate on the cold-start path.
func newKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).SetInt64(math.MaxInt64))
}

// signLeaf issues a certificate for key, signed by the CA.
func signLeaf(spec CertSpec, key crypto.Signer, ca *KeyPair, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.CommonName, Organization: spec.Organizations},
		DNSNames:              spec.DNSNames,
		IPAddresses:           spec.IPs,
		NotBefore:             now.Add(-notBeforeSkew).UTC(),
		NotAfter:              now.Add(lifetime).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           spec.Usages,
		BasicConstraintsValid: true,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	if ca.Cert.NotAfter.Before(tmpl.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// KeyPair is a certificate with its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain are the intermediates sent with Cert: during a CA rotation, the
	// new CA cross-signed by the old one (see rotate.go); else none.
	Chain []*x509.Certificate
}

func newCA(commonName string) (*KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	// client-go's helper issues a CA valid for 10 years (CALifetime).
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: commonName}, key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// loadKeyPair reads base.crt and base.key; ok is false when either is missing.
func loadKeyPair(base string) (*KeyPair, bool, error) {
	certs, err := certutil.CertsFromFile(base + ".crt")
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("failed to read certificate %s.crt: %w", base, err)
	}
	key, err := keyutil.PrivateKeyFromFile(base + ".key")
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("failed to read key %s.key: %w", base, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, false, fmt.Errorf("key %s.key is not a signing key", base)
	}
	return &KeyPair{Cert: certs[0], Key: signer, Chain: certs[1:]}, true, nil
}

func writeKeyPair(base string, kp *KeyPair) error {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(kp.Key)
	if err != nil {
		return err
	}
	// Key first: a cert without its key is treated as missing on next start.
	// A renewal keeps the key: its file is left as it is.
	if err := fsutil.WriteIfChanged(base+".key", keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(base+".crt", EncodeChain(kp), 0o644)
}

// EncodeChain returns the PEM encoding of kp's certificate and its chain.
func EncodeChain(kp *KeyPair) []byte {
	out := EncodeCert(kp.Cert)
	for _, c := range kp.Chain {
		out = append(out, EncodeCert(c)...)
	}
	return out
}

// EncodeCert returns the PEM encoding of a certificate.
func EncodeCert(cert *x509.Certificate) []byte {
	pem, _ := certutil.EncodeCertificates(cert)
	return pem
}

// sameIPs reports whether two IP lists hold the same addresses in any order.
func sameIPs(a, b []net.IP) bool {
	return sameStrings(ipStrings(a), ipStrings(b))
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// sameStrings reports whether two lists hold the same values in any order.
func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
