package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// Reasons of the Events the certificate check records on kube-system.
const (
	ReasonCertificateRenewed = "CertificateRenewed"
	ReasonRenewalFailed      = "CertificateRenewalFailed"
	ReasonCAExpiringSoon     = "CAExpiringSoon"
)

// pkiParams are the host facts and lifetimes the certificates follow.
func pkiParams(c *config.ControlPlane, paths Paths) (pki.Params, error) {
	hostname, err := os.Hostname()
	if err != nil {
		return pki.Params{}, fmt.Errorf("failed to read hostname: %w", err)
	}
	serviceIP, err := config.NthAddress(c.Network.ServiceCIDR, 1)
	if err != nil {
		return pki.Params{}, err
	}
	return pki.Params{
		Dir:           paths.PKI(),
		Hostname:      hostname,
		AdvertiseIP:   net.ParseIP(c.AdvertiseAddress),
		ServiceIP:     serviceIP.AsSlice(),
		ClusterDomain: c.Network.ClusterDomain,
		ExtraSANs:     c.ExtraSANs,
		Lifetimes:     pki.Lifetimes{Leaf: c.Certificates.LeafLifetime.Duration, RenewBefore: c.Certificates.RenewBefore.Duration},
	}, nil
}

// componentKubeconfigs are the kubeconfigs of the in-process clients: they
// name the certificate files, so a renewal reaches them without a restart.
var componentKubeconfigs = []string{pki.ControllerManager, pki.Scheduler, pki.CSRApprover, pki.JoinObjects, pki.Addons, pki.CSI}

// writeKubeconfigs writes every kubeconfig of the control plane. The admin
// and super-admin ones embed their certificates (users copy them; each
// kubectl call reads them anew) and change with every renewal; the
// components' name files and change only when the paths do.
func writeKubeconfigs(c *config.ControlPlane, paths Paths, bundle *pki.Bundle) error {
	server := LocalServer(c)
	write := func(user string, kubeconfig []byte, err error) error {
		if err == nil {
			err = fsutil.WriteIfChanged(paths.Kubeconfig(user), kubeconfig, 0o600)
		}
		if err != nil {
			return fmt.Errorf("failed to write kubeconfig %s: %w", user, err)
		}
		if user == pki.Admin {
			if err := fsutil.WriteIfChanged(c.AdminKubeconfig, kubeconfig, 0o600); err != nil {
				return fmt.Errorf("failed to write admin kubeconfig: %w", err)
			}
		}
		return nil
	}
	for _, user := range []string{pki.SuperAdmin, pki.Admin} {
		kubeconfig, err := bundle.Kubeconfig(server, user)
		if err := write(user, kubeconfig, err); err != nil {
			return err
		}
	}
	for _, user := range componentKubeconfigs {
		kubeconfig, err := bundle.FileKubeconfig(server, user)
		if err := write(user, kubeconfig, err); err != nil {
			return err
		}
	}
	return nil
}

// certRenewal checks the certificates at start and every interval while the
// control plane runs: it renews each leaf that is due (pki.Ensure re-signs
// its key, so only the .crt changes) and rewrites the kubeconfigs that
// embed certificates. Every component reloads the files on its own (see
// the table in README's certificates section). A CA with less than
// pki.CAWarnBefore left is reported in the log and as a Warning Event.
type certRenewal struct {
	c        *config.ControlPlane
	paths    Paths
	params   pki.Params
	interval time.Duration
	progress io.Writer
	client   func() (kubernetes.Interface, error) // records Events
	now      func() time.Time

	mu          sync.Mutex // one check (or rotation re-issue) at a time
	recorder    record.EventRecorder
	broadcaster record.EventBroadcaster
	cancel      context.CancelFunc
	done        chan struct{}
}

func newCertRenewal(c *config.ControlPlane, paths Paths, progress io.Writer) *certRenewal {
	return &certRenewal{c: c, paths: paths, interval: c.Certificates.CheckInterval.Duration, progress: progress,
		client: controllerClient(paths, pki.Addons), now: time.Now}
}

func (r *certRenewal) Name() string { return "certificate renewal" }

// Init runs before any component starts, so the clients they build check for
// renewed certificates in time (a renewed leaf stays valid for RenewBefore).
func (r *certRenewal) Init(context.Context) error {
	pki.TuneClientCertReload(r.c.Certificates.RenewBefore.Duration)
	params, err := pkiParams(r.c, r.paths)
	r.params = params
	return err
}

func (r *certRenewal) Start(context.Context) error {
	client, err := r.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	r.broadcaster = record.NewBroadcaster(record.WithContext(ctx))
	r.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	r.recorder = r.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vcluster-standalone"})
	// The start's own check (preparePKI) renewed what was due; this one
	// reports the CAs once the API server can take Events.
	r.check()
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.check()
			}
		}
	}()
	return nil
}

func (r *certRenewal) Stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	<-r.done
	r.broadcaster.Shutdown()
	r.cancel = nil
	return nil
}

// eventObject is what the Events are about: the kube-system namespace,
// where `kubectl get events -n kube-system` shows them.
var eventObject = &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: metav1.NamespaceSystem, Namespace: metav1.NamespaceSystem}

// check renews what is due and warns about CAs close to their end.
func (r *certRenewal) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	begin := time.Now()
	now := r.now()
	bundle, events, err := pki.Ensure(r.params, now)
	if err == nil && len(events) > 0 {
		err = writeKubeconfigs(r.c, r.paths, bundle)
	}
	if err != nil {
		klog.ErrorS(err, "certificate check failed; retrying at the next check", "interval", r.interval)
		r.recorder.Eventf(eventObject, corev1.EventTypeWarning, ReasonRenewalFailed, "certificate check failed (retrying every %s): %v", r.interval, err)
		return
	}
	for _, e := range events {
		fmt.Fprintf(r.progress, "certificate %s: %s, valid until %s\n", e.Name, e.Action, bundle.Leaves[e.Name].Cert.NotAfter.UTC().Format(time.RFC3339))
		r.recorder.Eventf(eventObject, corev1.EventTypeNormal, ReasonCertificateRenewed, "certificate %s %s, valid until %s", e.Name, e.Action,
			bundle.Leaves[e.Name].Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(events) > 0 {
		fmt.Fprintf(r.progress, "renewed %d certificate(s) in %s; the components reload them from the files\n", len(events), time.Since(begin).Round(time.Millisecond))
	}
	for _, name := range pki.CAs {
		ca := bundle.CAs[name].Cert
		if left := ca.NotAfter.Sub(now); left < pki.CAWarnBefore {
			msg := fmt.Sprintf("CA %s expires on %s (in %d days), and no renewal extends it: rotate it before then",
				name, ca.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
			klog.InfoS("WARNING: "+msg, "ca", name, "notAfter", ca.NotAfter)
			r.recorder.Event(eventObject, corev1.EventTypeWarning, ReasonCAExpiringSoon, msg)
		}
	}
}
