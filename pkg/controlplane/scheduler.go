package controlplane

import (
	"context"
	"strconv"

	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// schedulerArgs are our defaults for kube-scheduler.
func schedulerArgs(c *config.ControlPlane, p Paths) map[string]string {
	kubeconfig := p.Kubeconfig(pki.Scheduler)
	return map[string]string{
		"kubeconfig":                kubeconfig,
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"tls-cert-file":             p.Cert(pki.SchedulerServer),
		"tls-private-key-file":      p.Key(pki.SchedulerServer),
		"secure-port":               strconv.Itoa(c.Ports.Scheduler),
		"tls-cipher-suites":         pki.CipherSuitesFlag(),
		"leader-elect":              "false",
		"profiling":                 "false",
	}
}

// scheduler runs kube-scheduler in-process.
type scheduler struct{ upstreamServer }

func (s *scheduler) Name() string { return "kube-scheduler" }

func (s *scheduler) Start(ctx context.Context) error {
	opts := options.NewOptions()
	if err := parseFlags(s.Name(), opts.Flags.FlagSets, s.args); err != nil {
		return err
	}
	// Setup builds informers bound to the run context, so it runs inside it.
	s.run(func(ctx context.Context) error {
		cc, sched, err := app.Setup(ctx, opts)
		if err != nil {
			return err
		}
		return app.Run(ctx, cc, sched)
	})
	return nil
}
