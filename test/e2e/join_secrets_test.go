//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

const (
	joinEndpointCert = "/var/lib/vcluster-standalone/pki/join-endpoint.crt"
	samplerDir       = "/run/e2e-argv-sampler"
)

var (
	lineTokenRe = regexp.MustCompile(`VCS_TOKEN=([a-z0-9]{6})\.([a-z0-9]{16}) sh -s - `)
	linePinRe   = regexp.MustCompile(`--pinnedpubkey '(sha256//[A-Za-z0-9+/=]{44})'`)
)

// lineSecret returns the token's secret from a printed one-line join.
func lineSecret(t *testing.T, line string) string {
	t.Helper()
	m := lineTokenRe.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("the one-line join passes no VCS_TOKEN to sh: %s", line)
	}
	return m[2]
}

// runLine pastes line into a shell in node, as a user does: through the
// shell's input, so the line itself is in no process's argv.
func runLine(t *testing.T, node, line string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute) // as inNode: join waits for Ready
	defer cancel()
	return runWithInput(ctx, strings.NewReader(line+"\n"), labTool, "exec", node, "sh")
}

// argvSampler records every command line in a node until stopped: ps over
// all processes, in a loop, each distinct line once.
type argvSampler struct {
	node string
	done chan result
}

func startArgvSampler(t *testing.T, node string) *argvSampler {
	t.Helper()
	s := &argvSampler{node: node, done: make(chan result, 1)}
	script := `rm -rf ` + samplerDir + ` && mkdir -p ` + samplerDir + ` && touch ` + samplerDir + `/running &&
		while [ ! -e ` + samplerDir + `/stop ]; do ps -e -ww -o args=; done | awk '!seen[$0]++'`
	go func() { s.done <- inNode(t, node, "sh", "-c", script) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if inNode(t, node, "test", "-e", samplerDir+"/running").code == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the argv sampler did not start", node)
		}
	}
}

// stop ends the sampler and returns the distinct command lines it saw.
func (s *argvSampler) stop(t *testing.T) []string {
	t.Helper()
	mustInNode(t, s.node, "touch", samplerDir+"/stop")
	r := <-s.done
	inNode(t, s.node, "rm", "-rf", samplerDir)
	if r.code != 0 {
		t.Fatalf("%s: argv sampler: %s", s.node, r)
	}
	return strings.Split(r.stdout, "\n")
}

// checkNoSecretInArgv fails if any sampled command line holds secret, and
// if the sampler missed the join itself (then it proves nothing).
func checkNoSecretInArgv(t *testing.T, node, secret string, argv []string) {
	t.Helper()
	sawInstall, sawJoin := false, false
	for _, l := range argv {
		if strings.Contains(l, secret) {
			t.Errorf("%s: a process had the token in its command line, readable by every local user: %s", node, l)
		}
		sawInstall = sawInstall || strings.HasPrefix(l, "sh -s - ")
		sawJoin = sawJoin || strings.Contains(l, "node-agent join")
	}
	if !sawInstall || !sawJoin {
		t.Errorf("%s: the sampler saw install.sh (sh -s -) %v and node-agent join %v in %d command lines; it must see both", node, sawInstall, sawJoin, len(argv))
	}
	t.Logf("%s: %d distinct command lines sampled during the join, none with the token", node, len(argv))
}

// renewJoinEndpointCert forces a renewal of the join endpoint's certificate
// on the control plane (its .crt removed, the service restarted) and checks
// the running endpoint serves a new certificate for the same public key,
// the one pin the printed lines hold.
func renewJoinEndpointCert(t *testing.T, pin string) {
	t.Helper()
	before := parseCert(t, mustInNode(t, cpNode, "cat", joinEndpointCert))
	if got := pki.PublicKeyPin(before); got != pin {
		t.Fatalf("the printed pin %s is not the join endpoint's key (%s)", pin, got)
	}
	mustInNode(t, cpNode, "rm", joinEndpointCert)
	mustInNode(t, cpNode, "systemctl", "restart", service)
	waitReady(t, 3*time.Minute)
	after := parseCert(t, mustInNode(t, cpNode, "cat", joinEndpointCert))
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatalf("join-endpoint.crt was not reissued (serial %s)", after.SerialNumber)
	}
	if got := pki.PublicKeyPin(after); got != pin {
		t.Fatalf("renewal changed the join endpoint's pin from %s to %s: every printed join line breaks", pin, got)
	}
	served := servedCert(t, "10.123.0.10:6444")
	if served.SerialNumber.Cmp(after.SerialNumber) != 0 {
		t.Fatalf("the join endpoint serves serial %s, not the renewed %s", served.SerialNumber, after.SerialNumber)
	}
	t.Logf("join endpoint certificate renewed (serial %s -> %s), pin unchanged", before.SerialNumber, after.SerialNumber)
}

func parseCert(t *testing.T, pemData string) *x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertsPEM([]byte(pemData))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// servedCert is the leaf a TLS server at addr presents.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	var cert *x509.Certificate
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d := tls.Dialer{NetDialer: &net.Dialer{}, Config: &tls.Config{InsecureSkipVerify: true}} // only reads the certificate
		conn, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			last = err
			continue
		}
		cert = conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
		conn.Close()
		return cert
	}
	t.Fatalf("no TLS server at %s: %v", addr, last)
	return nil
}

// checkSHA256Refused: install.sh with the printed --url and pin but a wrong
// --sha256 downloads node-agent and refuses it in one line; nothing is
// installed.
func checkSHA256Refused(t *testing.T, node, line string) {
	t.Helper()
	args := strings.SplitN(line, " sh -s - ", 2)[1]
	wrong := strings.Repeat("0", 64)
	r := runLine(t, node, "VCS_TOKEN="+strings.Join(lineTokenRe.FindStringSubmatch(line)[1:], ".")+" sh "+installSh+" "+args+" --sha256 "+wrong)
	if r.code == 0 || strings.Count(r.stderr, "\n") != 0 || !strings.Contains(r.stderr, "which no --sha256 names: not installed") {
		t.Errorf("%s: install.sh with a wrong --sha256: %s; want one line refusing the download", node, r)
	}
	if inNode(t, node, "test", "-e", "/usr/local/bin/node-agent").code == 0 {
		t.Errorf("%s: node-agent installed although its checksum did not match", node)
	}
}
