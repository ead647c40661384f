package controlplane

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// CAReloadPeriod is how long a client-go client may keep using the CA file
// it read before re-reading it (client-go's ClientsAllowCARotation re-reads
// a kubeconfig's certificate-authority file every 5 minutes), plus a margin.
// The old CA is retired only this long after every party has the new one.
const CAReloadPeriod = 5*time.Minute + 15*time.Second

// CARotation runs `certs rotate-ca` against the control plane on this host:
// files in its pki dir, then what the running control plane publishes.
type CARotation struct {
	Config *config.ControlPlane
	Out    io.Writer
	Now    func() time.Time
	// Client reads and checks the cluster (the super-admin's by default).
	Client func() (kubernetes.Interface, error)
}

func (r *CARotation) paths() Paths { return Paths{DataDir: r.Config.DataDir} }

func (r *CARotation) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *CARotation) client() (kubernetes.Interface, error) {
	if r.Client != nil {
		return r.Client()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", r.paths().Kubeconfig(pki.SuperAdmin))
	if err != nil {
		return nil, fmt.Errorf("cannot read the super-admin credentials: %w", err)
	}
	return kubernetes.NewForConfig(cfg)
}

func (r *CARotation) step(begin time.Time, format string, args ...any) {
	fmt.Fprintf(r.Out, "[%6.2fs] %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
}

// Start is phase 1: the new cluster CA and the trust bundle; the running
// control plane, which watches the bundle, then re-issues the leaves and
// kubeconfigs and publishes the bundle, which this waits for.
func (r *CARotation) Start(ctx context.Context) error {
	begin, paths := time.Now(), r.paths()
	rot, err := pki.StartRotation(paths.PKI(), pki.ClusterCA, r.now())
	if errors.Is(err, pki.ErrRotationUnderway) {
		cur, _ := pki.LoadRotation(paths.PKI(), pki.ClusterCA)
		return fmt.Errorf("a rotation of the cluster CA is already under way (started %s); retire the old CA with `vcluster-standalone certs rotate-ca --finish`",
			cur.Started.Format(time.RFC3339))
	}
	if err != nil {
		return fmt.Errorf("failed to start the cluster CA rotation: %w", err)
	}
	cas, err := pki.TrustBundle(paths.PKI(), pki.ClusterCA)
	if err != nil {
		return err
	}
	r.step(begin, "new cluster CA %s (%s) signs from now on; trusted together with the old one %s (%s)",
		cas[0].Subject.CommonName, pki.CAPin(cas[0]), rot.Old.Cert.Subject.CommonName, pki.CAPin(rot.Old.Cert))
	if err := r.waitApplied(ctx, begin); err != nil {
		return err
	}
	fmt.Fprint(r.Out, r.describe(rot, cas[0]))
	return nil
}

// waitApplied waits until the running control plane has re-issued every
// leaf of the cluster CA for the current state and published the bundle in
// cluster-info (and with it every namespace's kube-root-ca.crt).
func (r *CARotation) waitApplied(ctx context.Context, begin time.Time) error {
	paths := r.paths()
	client, err := r.client()
	if err != nil {
		return err
	}
	want, err := os.ReadFile(paths.Trust(pki.ClusterCA))
	if err != nil {
		return err
	}
	last := errors.New("not yet")
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if last = leavesOutdated(paths); last != nil {
			return false, nil
		}
		got, err := publishedCA(ctx, client)
		switch {
		case err != nil:
			last = err
		case !bytes.Equal(got, want):
			last = errors.New("cluster-info still holds the previous trust bundle")
		default:
			last = nil
		}
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the CA files are in place, but the running control plane did not apply them within a minute (%v): is it running? It applies them when it starts", last)
	}
	r.step(begin, "control plane re-issued its certificates and kubeconfigs and published the trust bundle (cluster-info, kube-root-ca.crt); nodes pick it up within a minute")
	return nil
}

// leavesOutdated names a leaf of the cluster CA that is not yet issued by
// the current CA with the chain of the current rotation state, or is nil.
func leavesOutdated(paths Paths) error {
	cas, err := pki.TrustBundle(paths.PKI(), pki.ClusterCA)
	if err != nil {
		return err
	}
	rot, err := pki.LoadRotation(paths.PKI(), pki.ClusterCA)
	if err != nil {
		return err
	}
	for _, spec := range pki.Leaves(pki.Params{}) {
		if spec.CA != pki.ClusterCA {
			continue
		}
		certs, err := certutil.CertsFromFile(paths.Cert(spec.Name))
		if err != nil {
			return err
		}
		wantChain := 0
		if rot != nil {
			wantChain = 1
		}
		if !pki.SignedBy(certs[0], cas[0]) || len(certs)-1 != wantChain {
			return fmt.Errorf("certificate %s not re-issued yet", spec.Name)
		}
	}
	return nil
}

// publishedCA is the CA data of kube-public/cluster-info.
func publishedCA(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.Load([]byte(cm.Data[bootstrapapi.KubeConfigKey]))
	if err != nil {
		return nil, err
	}
	for _, c := range cfg.Clusters {
		return c.CertificateAuthorityData, nil
	}
	return nil, errors.New("cluster-info holds no cluster")
}

// Finish is phase 2: refused while anything still uses a certificate of
// the old CA (unless force), then the old CA is dropped from the bundle and
// the chains and its key deleted.
func (r *CARotation) Finish(ctx context.Context, force bool) error {
	begin, paths := time.Now(), r.paths()
	rot, err := pki.LoadRotation(paths.PKI(), pki.ClusterCA)
	if err != nil {
		return err
	}
	if rot == nil {
		return errors.New("no rotation of the cluster CA is under way; start one with `vcluster-standalone certs rotate-ca`")
	}
	users, err := r.OldCAUsers(ctx, rot)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		more := ""
		if len(users) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(users)-1)
		}
		if !force {
			return fmt.Errorf("the old cluster CA is still in use: %s%s; retry later, or retire it anyway with --force", users[0], more)
		}
		r.step(begin, "retiring the old CA although it is still in use (--force): %s%s", users[0], more)
	}
	if err := pki.FinishRotation(paths.PKI(), pki.ClusterCA); err != nil {
		return fmt.Errorf("failed to retire the old cluster CA: %w", err)
	}
	r.step(begin, "old cluster CA %s retired: removed from the trust bundle, its key deleted", rot.Old.Cert.Subject.CommonName)
	if err := r.waitApplied(ctx, begin); err != nil {
		return err
	}
	cas, err := pki.TrustBundle(paths.PKI(), pki.ClusterCA)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.Out, "Rotation of the cluster CA finished: only %s (%s) is trusted. Join lines now carry its pin alone;\n"+
		"kubeconfigs copied off this host before phase 1 no longer work: fetch them again (vcluster-standalone kubeconfig).\n",
		cas[0].Subject.CommonName, pki.CAPin(cas[0]))
	return nil
}

// Status describes the rotation state of the cluster CA.
func (r *CARotation) Status(ctx context.Context) (string, error) {
	paths := r.paths()
	rot, err := pki.LoadRotation(paths.PKI(), pki.ClusterCA)
	if err != nil {
		return "", err
	}
	cas, err := pki.TrustBundle(paths.PKI(), pki.ClusterCA)
	if os.IsNotExist(err) {
		return "", fmt.Errorf("no cluster CA trust bundle in %s: has this control plane been started with this version?", paths.PKI())
	}
	if err != nil {
		return "", err
	}
	if rot == nil {
		return fmt.Sprintf("No rotation of the cluster CA is under way: %s (%s) is the only one trusted.\n", cas[0].Subject.CommonName, pki.CAPin(cas[0])), nil
	}
	s := r.describe(rot, cas[0])
	users, err := r.OldCAUsers(ctx, rot)
	if err != nil {
		return s + fmt.Sprintf("Could not check what still uses the old CA: %v\n", err), nil
	}
	if len(users) == 0 {
		return s + "Nothing uses the old CA any more: it can be retired now.\n", nil
	}
	s += "Still using the old CA:\n"
	for _, u := range users {
		s += "  - " + u + "\n"
	}
	return s, nil
}

// describe says where a rotation stands and what comes next.
func (r *CARotation) describe(rot *pki.Rotation, signing *x509.Certificate) string {
	return fmt.Sprintf(`Rotation of the cluster CA under way since %s (phase 1 of 2 done):
  signing CA: %s (%s)
  old CA, still trusted: %s (%s)
Kubeconfigs copied off this host keep working until then; fetch them again now
(vcluster-standalone kubeconfig): they trust both CAs and hold a certificate of the new one.
Join lines printed now pin both CAs. Leaves of the new CA carry it cross-signed by the old one,
so parties that still trust only the old CA keep working. Next: nodes refresh their CA file from
cluster-info (30 s) and clients re-read it within %s. The upstream kubelet reads its CA and
client certificate once: once a node has the bundle, restart its node-agent (pods keep running),
which also renews the kubelet's client certificate with the new CA. Then retire the old CA with:
  vcluster-standalone certs rotate-ca --finish
(it refuses, naming what still uses the old CA, until nothing does; see "certs rotate-ca status").
`, rot.Started.Format(time.RFC3339), signing.Subject.CommonName, pki.CAPin(signing),
		rot.Old.Cert.Subject.CommonName, pki.CAPin(rot.Old.Cert), CAReloadPeriod.Round(time.Minute))
}

// OldCAUsers lists what still depends on the old CA of rot, one line each:
// control-plane leaves and kubeconfigs signed by it, clients on this host
// that may not have re-read the bundle yet, and nodes that do not trust the
// new CA yet, re-read it too recently, or whose kubelet client certificate
// the old CA signed.
func (r *CARotation) OldCAUsers(ctx context.Context, rot *pki.Rotation) ([]string, error) {
	paths, now := r.paths(), r.now()
	old := rot.Old.Cert
	var users []string
	for _, spec := range pki.Leaves(pki.Params{}) {
		if spec.CA != pki.ClusterCA {
			continue
		}
		certs, err := certutil.CertsFromFile(paths.Cert(spec.Name))
		if err == nil && pki.SignedBy(certs[0], old) {
			users = append(users, "certificate "+paths.Cert(spec.Name))
		}
	}
	kubeconfigs := []string{r.Config.AdminKubeconfig, paths.Kubeconfig(pki.SuperAdmin), paths.Kubeconfig(pki.Admin)}
	for _, user := range componentKubeconfigs {
		kubeconfigs = append(kubeconfigs, paths.Kubeconfig(user))
	}
	for _, path := range kubeconfigs {
		if cert, err := kubeconfigClientCert(path); err == nil && pki.SignedBy(cert, old) {
			users = append(users, "the client certificate of kubeconfig "+path)
		}
	}
	if until := rot.Started.Add(CAReloadPeriod); now.Before(until) {
		users = append(users, fmt.Sprintf("the control plane's own clients, which may trust only the old CA until they re-read the bundle by %s", until.UTC().Format(time.TimeOnly)))
	}
	client, err := r.client()
	if err != nil {
		return nil, err
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to list the nodes: %w", err)
	}
	newPin, oldPin := "", pki.CAPin(old)
	if cas, err := pki.TrustBundle(paths.PKI(), pki.ClusterCA); err == nil {
		newPin = pki.CAPin(cas[0])
	}
	for _, n := range nodes.Items {
		if why := nodeUsesOldCA(n.Annotations[join.TrustAnnotation], newPin, oldPin, now); why != "" {
			users = append(users, "node "+n.Name+": "+why)
		}
	}
	return users, nil
}

// nodeUsesOldCA says why a node with TrustReport value still depends on the
// old CA, or "".
func nodeUsesOldCA(value, newPin, oldPin string, now time.Time) string {
	if value == "" {
		return "it has not reported which CA it trusts (is its node-agent running, and as new as the control plane?)"
	}
	var rep join.TrustReport
	if err := json.Unmarshal([]byte(value), &rep); err != nil {
		return "its " + join.TrustAnnotation + " annotation is not readable"
	}
	switch {
	case !slices.Contains(rep.Trusted, newPin):
		return "it does not trust the new CA yet (it refreshes its CA file every 30 s)"
	case !slices.Contains(rep.KubeletTrusted, newPin):
		return "its kubelet started before the new CA reached it and trusts the old CA alone (upstream reads its CA once): restart node-agent (`systemctl restart node-agent`; pods keep running)"
	case rep.KubeletClientCA == oldPin:
		return "its kubelet client certificate is signed by the old CA: restart node-agent (`systemctl restart node-agent`; pods keep running), which renews it"
	case now.Before(rep.Since.Add(CAReloadPeriod)):
		return fmt.Sprintf("its clients may trust only the old CA until they re-read the bundle by %s", rep.Since.Add(CAReloadPeriod).UTC().Format(time.TimeOnly))
	}
	return ""
}

// kubeconfigClientCert is the client certificate a kubeconfig uses.
func kubeconfigClientCert(path string) (*x509.Certificate, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, err
	}
	for _, auth := range cfg.AuthInfos {
		data := auth.ClientCertificateData
		if len(data) == 0 && auth.ClientCertificate != "" {
			if data, err = os.ReadFile(auth.ClientCertificate); err != nil {
				return nil, err
			}
		}
		certs, err := certutil.ParseCertsPEM(data)
		if err != nil {
			return nil, err
		}
		return certs[0], nil
	}
	return nil, errors.New("no user")
}

// reissue re-issues the leaves and kubeconfigs for the current rotation
// state when the trust bundle changed (`certs rotate-ca` ran): the running
// control plane, with its own parameters, is the only writer of leaves.
func (r *certRenewal) reissue() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	begin := time.Now()
	bundle, events, err := pki.Ensure(r.params, r.now())
	if err != nil {
		return err
	}
	if err := writeKubeconfigs(r.c, r.paths, bundle); err != nil {
		return err
	}
	for _, e := range events {
		fmt.Fprintf(r.progress, "certificate %s: %s\n", e.Name, e.Action)
	}
	fmt.Fprintf(r.progress, "CA rotation: re-issued %d certificate(s) in %s; the components reload them from the files\n", len(events), time.Since(begin).Round(time.Millisecond))
	return nil
}
