package pki

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// A CA rotation replaces a CA without a moment in which anything that
// worked stops working:
//
// Phase 1 (StartRotation) makes the new CA the signing CA (<ca>.crt/.key),
// keeps the outgoing one below rotation/<ca>/, and writes the trust bundle
// (<ca>-bundle.crt: new, then old) that every relying party reads. Leaves
// issued by the new CA carry, as their chain, the new CA cross-signed by the
// old one: a party that still trusts only the old CA verifies them through
// that intermediate, so servers may switch before every client has the
// bundle.
//
// Phase 2 (FinishRotation) drops the old CA from the bundle, the cross
// certificate from the chains, and the old CA's key from disk.
//
// The state of a rotation is files below the pki dir only (rotation/<ca>/),
// so a backup of the pki dir holds it.
const rotationDir = "rotation"

// Files of one CA's rotation, below rotation/<ca>/.
const (
	rotationOld     = "old"     // the outgoing CA: old.crt, old.key
	rotationNew     = "new"     // the incoming CA, kept until it is the signing CA
	rotationCross   = "cross"   // cross.crt: the incoming CA signed by the outgoing one
	rotationStarted = "started" // RFC 3339 time; written last, it marks phase 1 done
)

// RotatableCAs are the CAs StartRotation accepts; the others (front-proxy,
// etcd, kubelet-serving) are not rotated yet.
var RotatableCAs = []string{ClusterCA}

// Errors of the rotation state machine, for callers that explain them.
var (
	ErrRotationUnderway = errors.New("a rotation is already under way")
	ErrNoRotation       = errors.New("no rotation is under way")
)

// BundleName is the file base of a CA's trust bundle, e.g. "ca-bundle":
// the CA alone, or during a rotation the new CA followed by the old one.
func BundleName(ca string) string { return ca + "-bundle" }

// Rotation is the state of one CA's rotation.
type Rotation struct {
	CA      string
	Started time.Time
	Old     *KeyPair          // the outgoing CA
	Cross   *x509.Certificate // the signing CA, signed by Old
}

func rotationPath(dir, ca, file string) string {
	return filepath.Join(dir, rotationDir, ca, file)
}

// LoadRotation returns the finished phase 1 of ca's rotation, or nil when
// none is under way (a start that was cut short counts as none: running
// StartRotation again completes it).
func LoadRotation(dir, ca string) (*Rotation, error) {
	data, err := os.ReadFile(rotationPath(dir, ca, rotationStarted))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the rotation state of CA %s: %w", ca, err)
	}
	started, err := time.Parse(time.RFC3339, strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("rotation state %s: %w", rotationPath(dir, ca, rotationStarted), err)
	}
	old, ok, err := loadKeyPair(rotationPath(dir, ca, rotationOld))
	if err == nil && !ok {
		err = fmt.Errorf("the outgoing CA is missing")
	}
	if err != nil {
		return nil, fmt.Errorf("rotation of CA %s: %w", ca, err)
	}
	cross, err := certutil.CertsFromFile(rotationPath(dir, ca, rotationCross) + ".crt")
	if err != nil {
		return nil, fmt.Errorf("rotation of CA %s: %w", ca, err)
	}
	return &Rotation{CA: ca, Started: started, Old: old, Cross: cross[0]}, nil
}

// StartRotation is phase 1 of ca's rotation: a new CA, the trust bundle of
// both, the new one made the signing CA. Leaves are re-issued by the next
// Ensure. Every step is idempotent, so running it again after it was cut
// short finishes it; after it finished it returns ErrRotationUnderway.
func StartRotation(dir, ca string, now time.Time) (*Rotation, error) {
	if !isRotatable(ca) {
		return nil, fmt.Errorf("CA %s cannot be rotated (rotatable: %s)", ca, strings.Join(RotatableCAs, ", "))
	}
	if r, err := LoadRotation(dir, ca); err != nil {
		return nil, err
	} else if r != nil {
		return nil, fmt.Errorf("CA %s: %w (started %s)", ca, ErrRotationUnderway, r.Started.Format(time.RFC3339))
	}
	// The outgoing CA: the current one, unless a cut-short start already
	// saved it (the current one may by now be the new CA).
	old, ok, err := loadKeyPair(rotationPath(dir, ca, rotationOld))
	if err != nil {
		return nil, err
	}
	if !ok {
		cur, ok, err := loadKeyPair(filepath.Join(dir, ca))
		if err == nil && !ok {
			err = fmt.Errorf("CA %s does not exist in %s", ca, dir)
		}
		if err != nil {
			return nil, err
		}
		if err := writeRotationPair(dir, ca, rotationOld, cur); err != nil {
			return nil, err
		}
		old = cur
	}
	next, ok, err := loadKeyPair(rotationPath(dir, ca, rotationNew))
	if err != nil {
		return nil, err
	}
	if !ok {
		// A start cut short after the swap: the signing CA is the new one.
		if cur, ok, err := loadKeyPair(filepath.Join(dir, ca)); err == nil && ok && !cur.Cert.Equal(old.Cert) {
			next = cur
		} else if next, err = newCA(rotatedCAName(ca, now)); err != nil {
			return nil, fmt.Errorf("failed to generate the new CA %s: %w", ca, err)
		}
		if err := writeRotationPair(dir, ca, rotationNew, next); err != nil {
			return nil, err
		}
	}
	cross, err := crossSign(next.Cert, old, now)
	if err != nil {
		return nil, fmt.Errorf("failed to cross-sign the new CA %s: %w", ca, err)
	}
	if err := fsutil.WriteFileAtomic(rotationPath(dir, ca, rotationCross)+".crt", EncodeCert(cross), 0o644); err != nil {
		return nil, err
	}
	// Trust first, then signing: nothing is signed by the new CA before the
	// bundle that accepts it is in place.
	if err := writeBundle(dir, ca, next.Cert, old.Cert); err != nil {
		return nil, err
	}
	if err := writeKeyPair(filepath.Join(dir, ca), next); err != nil {
		return nil, fmt.Errorf("failed to make the new CA %s the signing CA: %w", ca, err)
	}
	if err := fsutil.WriteFileAtomic(rotationPath(dir, ca, rotationStarted), []byte(now.UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return nil, err
	}
	_ = os.Remove(rotationPath(dir, ca, rotationNew) + ".key")
	_ = os.Remove(rotationPath(dir, ca, rotationNew) + ".crt")
	return LoadRotation(dir, ca)
}

// FinishRotation is phase 2: the bundle holds the signing CA alone and the
// outgoing CA, its key and the cross certificate are deleted. Leaves lose the
// cross certificate from their chain at the next Ensure. Callers check
// first that nothing still uses a certificate of the old CA.
func FinishRotation(dir, ca string) error {
	r, err := LoadRotation(dir, ca)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("CA %s: %w", ca, ErrNoRotation)
	}
	cur, ok, err := loadKeyPair(filepath.Join(dir, ca))
	if err == nil && !ok {
		err = fmt.Errorf("CA %s does not exist in %s", ca, dir)
	}
	if err != nil {
		return err
	}
	if err := writeBundle(dir, ca, cur.Cert); err != nil {
		return err
	}
	// The state file first: from here on the rotation is over even if the
	// removal below is cut short.
	if err := os.Remove(rotationPath(dir, ca, rotationStarted)); err != nil {
		return fmt.Errorf("failed to end the rotation of CA %s: %w", ca, err)
	}
	return os.RemoveAll(filepath.Join(dir, rotationDir, ca))
}

// TrustBundle returns the certificates of ca's bundle file, as written by
// Ensure, StartRotation and FinishRotation.
func TrustBundle(dir, ca string) ([]*x509.Certificate, error) {
	return certutil.CertsFromFile(filepath.Join(dir, BundleName(ca)) + ".crt")
}

// SignedBy reports whether cert was issued by ca (its signature verifies
// with ca's key).
func SignedBy(cert, ca *x509.Certificate) bool {
	return cert.CheckSignatureFrom(ca) == nil
}

func isRotatable(ca string) bool {
	for _, c := range RotatableCAs {
		if c == ca {
			return true
		}
	}
	return false
}

// rotatedCAName is the common name of a rotated CA: the original name and
// when it was made, so old and new are told apart in every chain.
func rotatedCAName(ca string, now time.Time) string {
	return strings.ReplaceAll(ca, "/", "-") + "-" + now.UTC().Format("20060102T150405Z")
}

func writeRotationPair(dir, ca, name string, kp *KeyPair) error {
	base := rotationPath(dir, ca, name)
	if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
		return err
	}
	if err := writeKeyPair(base, kp); err != nil {
		return fmt.Errorf("failed to save CA %s for the rotation: %w", ca, err)
	}
	return nil
}

// writeBundle writes ca's trust bundle: the given CAs in order.
func writeBundle(dir, ca string, certs ...*x509.Certificate) error {
	var pem []byte
	for _, c := range certs {
		pem = append(pem, EncodeCert(c)...)
	}
	if err := fsutil.WriteIfChanged(filepath.Join(dir, BundleName(ca))+".crt", pem, 0o644); err != nil {
		return fmt.Errorf("failed to write the trust bundle of CA %s: %w", ca, err)
	}
	return nil
}

// crossSign issues a CA certificate with next's subject and public key,
// signed by old: the intermediate through which parties that trust only old
// verify what next signs. It lives no longer than either CA.
func crossSign(next *x509.Certificate, old *KeyPair, now time.Time) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := next.NotAfter
	if old.Cert.NotAfter.Before(notAfter) {
		notAfter = old.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               next.Subject,
		SubjectKeyId:          next.SubjectKeyId,
		AuthorityKeyId:        old.Cert.SubjectKeyId,
		NotBefore:             now.Add(-5 * time.Minute).UTC(),
		NotAfter:              notAfter,
		KeyUsage:              next.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, old.Cert, next.PublicKey, old.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// ensureBundle writes ca's trust bundle as the rotation state says it must be
// (the CA alone, or during a rotation the CA then the outgoing one) and
// returns the bundle and the chain its leaves carry. A start that was cut
// short is refused: the bundle it needs is only known once it completed.
func ensureBundle(dir, ca string, cur *KeyPair) (trust, chain []*x509.Certificate, err error) {
	r, err := LoadRotation(dir, ca)
	if err != nil {
		return nil, nil, err
	}
	if r == nil {
		if _, err := os.Stat(rotationPath(dir, ca, rotationOld) + ".crt"); err == nil {
			return nil, nil, fmt.Errorf("the rotation of CA %s was cut short; run `vcluster-standalone certs rotate-ca` again to complete it", ca)
		}
		trust = []*x509.Certificate{cur.Cert}
	} else {
		trust, chain = []*x509.Certificate{cur.Cert, r.Old.Cert}, []*x509.Certificate{r.Cross}
	}
	return trust, chain, writeBundle(dir, ca, trust...)
}

// sameChain reports whether two chains hold the same certificates in order.
func sameChain(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
