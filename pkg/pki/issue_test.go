package pki

import (
	"crypto/x509"
	"os"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

func TestIssueSignsWithTheNamedCAAndWritesNothing(t *testing.T) {
	p := testParams(t)
	now := time.Now()
	b, _, err := Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(p.Dir)
	certPEM, keyPEM, err := b.Issue(CertSpec{Name: "node", CA: ClusterCA, CommonName: "system:node:cp-1", Organizations: []string{"system:nodes"}, Usages: clientUsage}, now)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert := certs[0]
	if cert.Subject.CommonName != "system:node:cp-1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:nodes" {
		t.Fatalf("subject %s", cert.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(b.CAs[ClusterCA].Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("not a client certificate of the cluster CA: %v", err)
	}
	if _, err := keyutil.ParsePrivateKeyPEM(keyPEM); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadDir(p.Dir); len(after) != len(before) {
		t.Fatal("Issue must not write files")
	}
	if _, _, err := b.Issue(CertSpec{Name: "x", CA: "nope"}, now); err == nil {
		t.Fatal("unknown CA must fail")
	}
}
