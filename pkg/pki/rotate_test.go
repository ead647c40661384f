package pki

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// verifies reports whether kp's certificate verifies, with its chain, for
// a party that trusts only roots.
func verifies(kp *KeyPair, roots ...*x509.Certificate) bool {
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, c := range kp.Chain {
		inter.AddCert(c)
	}
	_, err := kp.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func TestRotationPhasesKeepEveryPartyWorking(t *testing.T) {
	p := testParams(t)
	now := time.Now()
	before, _, err := Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	oldCA := before.CAs[ClusterCA].Cert
	if trust, err := TrustBundle(p.Dir, ClusterCA); err != nil || len(trust) != 1 || !trust[0].Equal(oldCA) {
		t.Fatalf("bundle outside a rotation: %v %v, want the CA alone", trust, err)
	}
	if r, err := LoadRotation(p.Dir, ClusterCA); r != nil || err != nil {
		t.Fatalf("rotation before any start: %v %v", r, err)
	}
	if err := FinishRotation(p.Dir, ClusterCA); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("finish without start: %v", err)
	}

	// Phase 1.
	r, err := StartRotation(p.Dir, ClusterCA, now)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Old.Cert.Equal(oldCA) || !SignedBy(r.Cross, oldCA) {
		t.Fatalf("rotation state: old %s, cross signed by old %t", r.Old.Cert.Subject, SignedBy(r.Cross, oldCA))
	}
	if _, err := StartRotation(p.Dir, ClusterCA, now); !errors.Is(err, ErrRotationUnderway) {
		t.Fatalf("start twice: %v, want ErrRotationUnderway", err)
	}
	during, events, err := Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	newCA := during.CAs[ClusterCA].Cert
	if newCA.Equal(oldCA) || newCA.Subject.CommonName == oldCA.Subject.CommonName {
		t.Fatalf("signing CA after start: %s, want a new CA with its own name", newCA.Subject)
	}
	if trust := during.Trust[ClusterCA]; len(trust) != 2 || !trust[0].Equal(newCA) || !trust[1].Equal(oldCA) {
		t.Fatalf("bundle during the rotation has %d certificates, want new then old", len(trust))
	}
	renewed := map[string]bool{}
	for _, e := range events {
		renewed[e.Name] = true
	}
	for _, spec := range Leaves(p) {
		kp := during.Leaves[spec.Name]
		if spec.CA != ClusterCA {
			if renewed[spec.Name] || len(kp.Chain) != 0 {
				t.Errorf("%s (CA %s) was touched by the cluster CA's rotation", spec.Name, spec.CA)
			}
			continue
		}
		if !renewed[spec.Name] || !SignedBy(kp.Cert, newCA) {
			t.Errorf("%s not re-issued by the new CA", spec.Name)
		}
		if !verifies(kp, oldCA) || !verifies(kp, newCA) {
			t.Errorf("%s: verifies for a party trusting only the old CA %t, only the new %t; want both",
				spec.Name, verifies(kp, oldCA), verifies(kp, newCA))
		}
	}
	// The join endpoint's pin outlives the rotation (printed join lines).
	if PublicKeyPin(during.Leaves[JoinEndpoint].Cert) != PublicKeyPin(before.Leaves[JoinEndpoint].Cert) {
		t.Error("the join endpoint's key changed with the CA")
	}
	// The chain is on disk, and a second Ensure leaves everything alone.
	if _, again, err := Ensure(p, now); err != nil || len(again) != 0 {
		t.Fatalf("second Ensure during the rotation: %v %v, want nothing to do", again, err)
	}

	// Phase 2.
	if err := FinishRotation(p.Dir, ClusterCA); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, rotationDir, ClusterCA)); !os.IsNotExist(err) {
		t.Fatalf("the old CA's key is still on disk: %v", err)
	}
	after, _, err := Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if trust := after.Trust[ClusterCA]; len(trust) != 1 || !trust[0].Equal(newCA) {
		t.Fatalf("bundle after the rotation: %d certificates, want the new CA alone", len(trust))
	}
	for _, spec := range Leaves(p) {
		kp := after.Leaves[spec.Name]
		if spec.CA == ClusterCA && (len(kp.Chain) != 0 || verifies(kp, oldCA) || !verifies(kp, newCA)) {
			t.Errorf("%s after the rotation: chain %d, old CA still verifies it %t", spec.Name, len(kp.Chain), verifies(kp, oldCA))
		}
	}
	if err := FinishRotation(p.Dir, ClusterCA); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("finish twice: %v, want ErrNoRotation", err)
	}
	// A second rotation starts from the new CA.
	if r2, err := StartRotation(p.Dir, ClusterCA, now.Add(time.Second)); err != nil || !r2.Old.Cert.Equal(newCA) {
		t.Fatalf("second rotation: %v", err)
	}
}

func TestCutShortStartIsRefusedThenCompleted(t *testing.T) {
	p := testParams(t)
	now := time.Now()
	if _, _, err := Ensure(p, now); err != nil {
		t.Fatal(err)
	}
	r, err := StartRotation(p.Dir, ClusterCA, now)
	if err != nil {
		t.Fatal(err)
	}
	// Cut short just before the state file: the new CA already signs.
	if err := os.Remove(rotationPath(p.Dir, ClusterCA, rotationStarted)); err != nil {
		t.Fatal(err)
	}
	signing, _, _ := loadKeyPair(filepath.Join(p.Dir, ClusterCA))
	if _, _, err := Ensure(p, now); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("Ensure after a cut-short start: %v, want it refused", err)
	}
	again, err := StartRotation(p.Dir, ClusterCA, now)
	if err != nil {
		t.Fatal(err)
	}
	cur, _, _ := loadKeyPair(filepath.Join(p.Dir, ClusterCA))
	if !again.Old.Cert.Equal(r.Old.Cert) || !cur.Cert.Equal(signing.Cert) {
		t.Fatal("re-running the start changed the old or the new CA")
	}
	if _, _, err := Ensure(p, now); err != nil {
		t.Fatal(err)
	}
}

func TestOnlyTheClusterCARotates(t *testing.T) {
	p := testParams(t)
	if _, _, err := Ensure(p, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{FrontProxyCA, EtcdCA, KubeletServingCA} {
		if _, err := StartRotation(p.Dir, ca, time.Now()); err == nil || !strings.Contains(err.Error(), "cannot be rotated") {
			t.Errorf("%s: %v, want refused", ca, err)
		}
	}
}
