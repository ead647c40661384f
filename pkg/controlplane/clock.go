package controlplane

import (
	"fmt"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// checkClockAgainstCAs refuses to start when this host's clock is before a
// CA's start of validity: every certificate it signed would then be "not yet
// valid" to every client, an error that does not name the clock. A CA not
// there yet (first start) is not judged.
func checkClockAgainstCAs(paths Paths, now time.Time) error {
	for _, name := range pki.CAs {
		certs, err := certutil.CertsFromFile(paths.Cert(name))
		if err != nil || len(certs) == 0 {
			continue
		}
		if ca := certs[0]; now.Before(ca.NotBefore) {
			return fmt.Errorf("this host's clock (%s) is before the start of validity of CA %s (%s, %s earlier): the clock is wrong; set the time (e.g. `timedatectl set-ntp true`) and start again",
				now.UTC().Format(time.RFC3339), name, ca.NotBefore.UTC().Format(time.RFC3339), ca.NotBefore.Sub(now).Round(time.Second))
		}
	}
	return nil
}
