package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/util/keyutil"
)

// TestJoinEndpointPinSurvivesRenewal: every way the join endpoint's leaf gets
// reissued (it expires, its SANs change, its certificate file is lost) keeps
// the public key, so a join line printed before still pins the endpoint; the
// other leaves keep theirs too (a live renewal replaces only the .crt).
func TestJoinEndpointPinSurvivesRenewal(t *testing.T) {
	p := testParams(t)
	b1, _, err := Ensure(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pin := PublicKeyPin(b1.Leaves[JoinEndpoint].Cert)
	serial := b1.Leaves[JoinEndpoint].Cert.SerialNumber
	apiserverPin := PublicKeyPin(b1.Leaves["apiserver"].Cert)

	renewals := []struct {
		name   string
		before func()
		now    time.Time
	}{
		{"expiring", func() {}, b1.Leaves[JoinEndpoint].Cert.NotAfter.Add(-RenewalThreshold)},
		{"SANs changed", func() { p.ExtraSANs = append(p.ExtraSANs, "join.example.com") }, time.Now()},
		{"certificate removed", func() {
			if err := os.Remove(filepath.Join(p.Dir, JoinEndpoint+".crt")); err != nil {
				t.Fatal(err)
			}
		}, time.Now()},
	}
	for _, r := range renewals {
		r.before()
		b, events, err := Ensure(p, r.now)
		if err != nil {
			t.Fatal(err)
		}
		renewed := false
		for _, e := range events {
			renewed = renewed || e.Name == JoinEndpoint
		}
		cert := b.Leaves[JoinEndpoint].Cert
		if !renewed || cert.SerialNumber.Cmp(serial) == 0 {
			t.Fatalf("%s: the join endpoint certificate was not reissued (events %v)", r.name, events)
		}
		serial = cert.SerialNumber
		if got := PublicKeyPin(cert); got != pin {
			t.Errorf("%s: pin changed from %s to %s: every printed join line breaks", r.name, pin, got)
		}
		if err := cert.CheckSignatureFrom(b.CAs[ClusterCA].Cert); err != nil {
			t.Errorf("%s: renewed certificate not from the cluster CA: %v", r.name, err)
		}
	}
	b, _, err := Ensure(p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if PublicKeyPin(b.Leaves["apiserver"].Cert) != apiserverPin {
		t.Error("the apiserver leaf got a new key on renewal: its .crt and .key would not match between the two renames")
	}
}

// TestJoinEndpointKeyChecked: a weak key in the join endpoint's key file is
// replaced, not kept; a key that does not match the certificate gets a
// certificate that does.
func TestJoinEndpointKeyChecked(t *testing.T) {
	weak, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]*ecdsa.PrivateKey{"P-224 key": weak, "key of another certificate": other} {
		p := testParams(t)
		if _, _, err := Ensure(p, time.Now()); err != nil {
			t.Fatal(err)
		}
		keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.Dir, JoinEndpoint+".key"), keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		b, events, err := Ensure(p, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		kp := b.Leaves[JoinEndpoint]
		if len(events) != 1 || events[0] != (Event{Name: JoinEndpoint, Action: "renewed: certificate does not match its key"}) {
			t.Errorf("%s: events %v, want the join endpoint renewed for its key", name, events)
		}
		if !publicKeyMatches(kp.Cert, kp.Key) {
			t.Errorf("%s: certificate and key still differ", name)
		}
		kept := kp.Key.(*ecdsa.PrivateKey).Equal(key)
		if want := key == other; kept != want {
			t.Errorf("%s: key kept = %v, want %v", name, kept, want)
		}
		// What start serves with must load as a pair.
		if _, err := tls.LoadX509KeyPair(filepath.Join(p.Dir, JoinEndpoint+".crt"), filepath.Join(p.Dir, JoinEndpoint+".key")); err != nil {
			t.Errorf("%s: files on disk are no key pair: %v", name, err)
		}
	}
}
