package pki

import (
	"crypto/tls"
	"strings"
)

// CipherSuites are the TLS 1.2 suites every server of the cluster accepts:
// ECDHE key exchange with an AEAD cipher, nothing with CBC or a SHA-1 MAC.
// TLS 1.3 suites are all AEAD, and Go does not let them be configured.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// MinTLSVersion is the lowest protocol version any server accepts.
const MinTLSVersion = tls.VersionTLS12

// CipherSuiteNames are CipherSuites by their IANA names, as the components'
// --tls-cipher-suites flags and etcd take them.
func CipherSuiteNames() []string {
	names := make([]string, len(CipherSuites))
	for i, id := range CipherSuites {
		names[i] = tls.CipherSuiteName(id)
	}
	return names
}

// CipherSuitesFlag is CipherSuiteNames as one comma-separated flag value.
func CipherSuitesFlag() string { return strings.Join(CipherSuiteNames(), ",") }

// ServerTLSConfig is the protocol floor and suites of every server we write
// ourselves (join endpoint, registry mirror); callers add certificates.
func ServerTLSConfig() *tls.Config {
	return &tls.Config{MinVersion: MinTLSVersion, CipherSuites: CipherSuites}
}
