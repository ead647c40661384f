package mirror

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// TLSFiles are the files the mirror's server uses, re-read when they change
// (the kubelet rotates its serving certificate; CAs may be rotated).
type TLSFiles struct {
	ServingCert string // certificate and key in one PEM file (the kubelet's serving pair)
	ClientCA    string // CA bundle that signs node client certificates
}

// reloading caches what parse made of a file until the file changes.
type reloading[T any] struct {
	path  string
	parse func([]byte) (T, error)

	mu      sync.Mutex
	modTime time.Time
	size    int64
	value   T
}

func (r *reloading[T]) get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var zero T
	st, err := os.Stat(r.path)
	if err != nil {
		return zero, err
	}
	if st.ModTime().Equal(r.modTime) && st.Size() == r.size {
		return r.value, nil
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		return zero, err
	}
	v, err := r.parse(data)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", r.path, err)
	}
	r.value, r.modTime, r.size = v, st.ModTime(), st.Size()
	return v, nil
}

// ServerTLS requires a client certificate signed by the client CA that names
// a node (O=system:nodes, CN=system:node:<name>), and serves the current
// serving certificate; both files are re-read when they change.
func ServerTLS(f TLSFiles) *tls.Config {
	cert := &reloading[*tls.Certificate]{path: f.ServingCert, parse: func(b []byte) (*tls.Certificate, error) {
		c, err := tls.X509KeyPair(b, b)
		return &c, err
	}}
	pool := &reloading[*x509.CertPool]{path: f.ClientCA, parse: func(b []byte) (*x509.CertPool, error) {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("no certificate in the CA bundle")
		}
		return p, nil
	}}
	outer := pki.ServerTLSConfig()
	outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := cert.get()
		if err != nil {
			return nil, fmt.Errorf("no serving certificate yet: %w", err)
		}
		p, err := pool.get()
		if err != nil {
			return nil, err
		}
		inner := pki.ServerTLSConfig()
		inner.Certificates = []tls.Certificate{*c}
		inner.ClientAuth = tls.RequireAndVerifyClientCert
		inner.ClientCAs = p
		inner.VerifyConnection = verifyNodeClient
		return inner, nil
	}
	return outer
}

// errNotNode rejects a client certificate that is not a node's.
var errNotNode = errors.New("client certificate is not a node's (want O=system:nodes, CN=system:node:<name>)")

// verifyNodeClient accepts only node client certificates (the chain itself
// was verified against the client CA already).
func verifyNodeClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errNotNode
	}
	leaf := cs.PeerCertificates[0]
	if !slices.Contains(leaf.Subject.Organization, "system:nodes") || !strings.HasPrefix(leaf.Subject.CommonName, "system:node:") {
		return errNotNode
	}
	return nil
}
