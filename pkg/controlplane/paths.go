package controlplane

import (
	"path/filepath"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// Paths is the layout of the control plane's data directory.
type Paths struct{ DataDir string }

func (p Paths) PKI() string               { return filepath.Join(p.DataDir, "pki") }
func (p Paths) Etcd() string              { return filepath.Join(p.DataDir, "etcd") }
func (p Paths) Generated(n string) string { return filepath.Join(p.DataDir, "etc", n) }
func (p Paths) Kubeconfig(n string) string {
	return filepath.Join(p.DataDir, "kubeconfig", n+".conf")
}
func (p Paths) Cert(name string) string { return filepath.Join(p.PKI(), name+".crt") }
func (p Paths) Key(name string) string  { return filepath.Join(p.PKI(), name+".key") }

// Trust is the trust bundle of CA ca (pki.BundleName): what every party
// that verifies certificates of that CA reads, so a CA rotation reaches it.
func (p Paths) Trust(ca string) string { return p.Cert(pki.BundleName(ca)) }
func (p Paths) EncryptionKey() string  { return filepath.Join(p.DataDir, "secrets", "encryption-key") }
func (p Paths) AuditLog() string       { return filepath.Join(p.DataDir, "logs", "audit.log") }

// CSIControllerSocket is where the CSI controller serves Identity and
// Controller (for csi-sanity and debugging; 0600).
func (p Paths) CSIControllerSocket() string {
	return filepath.Join(p.DataDir, "csi", "controller.sock")
}
