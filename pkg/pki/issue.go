package pki

import (
	"fmt"
	"time"

	"k8s.io/client-go/util/keyutil"
)

// Issue signs a new leaf certificate described by spec with the bundle's CA
// spec.CA, for a fresh key, and returns both PEM-encoded; nothing is written.
// It serves certificates outside the table, such as the kubelet client
// certificate of the control-plane host's own node.
func (b *Bundle) Issue(spec CertSpec, now time.Time) (certPEM, keyPEM []byte, err error) {
	ca, ok := b.CAs[spec.CA]
	if !ok {
		return nil, nil, fmt.Errorf("unknown CA %q", spec.CA)
	}
	kp, err := newLeaf(spec, ca, now, b.Lifetimes.leaf())
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(kp.Key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCert(kp.Cert), keyPEM, nil
}

// newLeaf makes a key and signs the leaf spec describes with ca.
func newLeaf(spec CertSpec, ca *KeyPair, now time.Time, lifetime time.Duration) (*KeyPair, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	cert, err := signLeaf(spec, key, ca, now, lifetime)
	if err != nil {
		return nil, fmt.Errorf("failed to sign %s: %w", spec.Name, err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}
