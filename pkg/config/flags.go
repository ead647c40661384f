package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// flagField ties a command-line flag to the config field it sets.
type flagField struct {
	name, usage string
	field       func(c *ControlPlane) any // pointer to the field
}

// controlPlaneFlags is the one table of flags: every config key has a flag.
var controlPlaneFlags = []flagField{
	{"advertise-address", "address other machines reach the API server on (default: the default-route interface's address)", func(c *ControlPlane) any { return &c.AdvertiseAddress }},
	{"bind-address", "address the API server listens on (default 0.0.0.0)", func(c *ControlPlane) any { return &c.BindAddress }},
	{"api-port", "API server port (default 6443)", func(c *ControlPlane) any { return &c.APIPort }},
	{"join-port", "join endpoint port, on the bind address: serves install.sh and node-agent to joining nodes (default 6444)", func(c *ControlPlane) any { return &c.JoinPort }},
	{"join-endpoint", "serve install.sh and node-agent to joining nodes on --join-port (default true); false: nodes need node-agent installed by other means", func(c *ControlPlane) any { return &c.JoinEndpoint }},
	{"data-dir", "directory for PKI, etcd data and generated files (default " + DefaultDataDir + ")", func(c *ControlPlane) any { return &c.DataDir }},
	{"admin-kubeconfig", "where to write the admin kubeconfig (default " + DefaultAdminKubeconfig + ")", func(c *ControlPlane) any { return &c.AdminKubeconfig }},
	{"pod-cidr", "pod network range (default " + DefaultPodCIDR + ")", func(c *ControlPlane) any { return &c.Network.PodCIDR }},
	{"service-cidr", "service network range (default " + DefaultServiceCIDR + ")", func(c *ControlPlane) any { return &c.Network.ServiceCIDR }},
	{"cluster-dns", "cluster DNS Service IP (default: 10th address of the service range)", func(c *ControlPlane) any { return &c.Network.ClusterDNS }},
	{"cluster-domain", "cluster DNS domain (default " + DefaultClusterDomain + ")", func(c *ControlPlane) any { return &c.Network.ClusterDomain }},
	{"network-backend", "how pod traffic crosses nodes: vxlan or host-gw (default vxlan)", func(c *ControlPlane) any { return &c.Network.Backend }},
	{"vni", "VXLAN network identifier of the cluster (default 4242)", func(c *ControlPlane) any { return &c.Network.VNI }},
	{"etcd-client-port", "etcd client port on 127.0.0.1 (default 2379)", func(c *ControlPlane) any { return &c.Ports.EtcdClient }},
	{"etcd-peer-port", "etcd peer port on 127.0.0.1 (default 2380)", func(c *ControlPlane) any { return &c.Ports.EtcdPeer }},
	{"controller-manager-port", "kube-controller-manager secure port on 127.0.0.1 (default 10257)", func(c *ControlPlane) any { return &c.Ports.ControllerManager }},
	{"scheduler-port", "kube-scheduler secure port on 127.0.0.1 (default 10259)", func(c *ControlPlane) any { return &c.Ports.Scheduler }},
	{"tls-san", "extra SAN for the API server certificate (repeatable)", func(c *ControlPlane) any { return &c.ExtraSANs }},
	{"kube-apiserver-arg", "extra kube-apiserver flag as key=value (repeatable)", func(c *ControlPlane) any { return &c.ExtraArgs.APIServer }},
	{"kube-controller-manager-arg", "extra kube-controller-manager flag as key=value (repeatable)", func(c *ControlPlane) any { return &c.ExtraArgs.ControllerManager }},
	{"kube-scheduler-arg", "extra kube-scheduler flag as key=value (repeatable)", func(c *ControlPlane) any { return &c.ExtraArgs.Scheduler }},
	{"feature-gates", "feature gates for every component, e.g. Foo=true,Bar=false", func(c *ControlPlane) any { return &c.FeatureGates }},
	{"pod-security-standard", "Pod Security Standard enforced by default: privileged, baseline or restricted (default baseline)", func(c *ControlPlane) any { return &c.Policies.PodSecurityStandard }},
	{"network-policy", "enforce NetworkPolicy and ClusterNetworkPolicy on every node (default true)", func(c *ControlPlane) any { return &c.Policies.NetworkPolicy.Enabled }},
	{"public-egress", "let pods reach addresses outside the cluster (default true); false: a baseline deny a namespace's egress NetworkPolicy may reopen", func(c *ControlPlane) any { return &c.Policies.NetworkPolicy.Workload.PublicEgress.Enabled }},
	{"public-egress-cidr", "the public range pods may reach (default " + DefaultPublicEgressCIDR + ")", func(c *ControlPlane) any { return &c.Policies.NetworkPolicy.Workload.PublicEgress.CIDR }},
	{"public-egress-except", "range no pod may reach, whatever its policies say (repeatable; default " + DefaultMetadataAddress + ", the cloud metadata address)", func(c *ControlPlane) any { return &c.Policies.NetworkPolicy.Workload.PublicEgress.Except }},
	{"secrets-encryption", "encrypt Secrets at rest (default true)", func(c *ControlPlane) any { return &c.SecretsEncryption.Enabled }},
	{"storage", "run the built-in CSI driver's controller and write its StorageClass, CSIDriver and CRDs (default true)", func(c *ControlPlane) any { return &c.Storage.Enabled }},
	{"cert-leaf-lifetime", "lifetime of the control plane's leaf certificates (default 8760h)", func(c *ControlPlane) any { return &c.Certificates.LeafLifetime }},
	{"cert-renew-before", "renew a leaf certificate, while running, when this little time is left (default 2160h)", func(c *ControlPlane) any { return &c.Certificates.RenewBefore }},
	{"cert-check-interval", "how often the running control plane checks its certificates (default 1h)", func(c *ControlPlane) any { return &c.Certificates.CheckInterval }},
	{"cert-signing-duration", "lifetime of CSR-signed certificates: the nodes' kubelet client and serving certificates, rotated by the kubelets (default 8760h)", func(c *ControlPlane) any { return &c.Certificates.SigningDuration }},
	{"etcd-quota-backend-bytes", "etcd database size at which it raises NOSPACE and refuses writes (default 2147483648, 2 GiB)", func(c *ControlPlane) any { return &c.Etcd.QuotaBackendBytes }},
	{"etcd-defrag-interval", "how often to check whether etcd needs defragmenting (default " + DefaultDefragInterval + "; 0: at start only)", func(c *ControlPlane) any { return &c.Etcd.Defrag.Interval }},
	{"etcd-defrag-threshold", "defragment etcd when this percentage of its database file is free (default 50)", func(c *ControlPlane) any { return &c.Etcd.Defrag.Threshold }},
	{"etcd-snapshot-interval", "interval of scheduled snapshots (default " + DefaultSnapshotInterval + "; 0: off)", func(c *ControlPlane) any { return &c.Etcd.Snapshots.Interval }},
	{"etcd-snapshot-retention", "how many scheduled snapshots to keep (default 5)", func(c *ControlPlane) any { return &c.Etcd.Snapshots.Retention }},
	{"etcd-snapshot-dir", "directory of snapshots (default <data-dir>/" + SnapshotDirName + ")", func(c *ControlPlane) any { return &c.Etcd.Snapshots.Dir }},
	{"etcd-snapshot-passphrase-file", "file holding the passphrase scheduled snapshots are encrypted with (default: not encrypted)", func(c *ControlPlane) any { return &c.Etcd.Snapshots.PassphraseFile }},
	{"join-node", "run workloads on the control-plane host too (default true)", func(c *ControlPlane) any { return &c.JoinNode }},
	{"local-node-config-file", "with --join-node: where to write this host's node-agent config (default " + DefaultNodeConfigFile + ")", func(c *ControlPlane) any { return &c.LocalNode.ConfigFile }},
	{"local-node-data-dir", "with --join-node: this host's node-agent data dir, for its credentials (default " + DefaultNodeDataDir + ")", func(c *ControlPlane) any { return &c.LocalNode.DataDir }},
	{"local-node-unit-dir", "with --join-node: where to write node-agent.service (default " + DefaultUnitDir + ")", func(c *ControlPlane) any { return &c.LocalNode.UnitDir }},
}

// Flags binds every control-plane flag to a config that holds flag values.
type Flags struct {
	set    *pflag.FlagSet
	values ControlPlane
}

// AddFlags registers the control-plane flags on fs.
func AddFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{set: fs}
	for _, ff := range controlPlaneFlags {
		switch p := ff.field(&f.values).(type) {
		case *string:
			fs.StringVar(p, ff.name, "", ff.usage)
		case *int:
			fs.IntVar(p, ff.name, 0, ff.usage)
		case *[]string:
			fs.StringArrayVar(p, ff.name, nil, ff.usage)
		case *map[string]string:
			fs.Var(&keyValues{m: p}, ff.name, ff.usage)
		case *map[string]bool:
			fs.Var(&gates{m: p}, ff.name, ff.usage)
		case *metav1.Duration:
			fs.DurationVar(&p.Duration, ff.name, 0, ff.usage)
		case **bool:
			fs.Var(&optionalBool{p: p}, ff.name, ff.usage)
			fs.Lookup(ff.name).NoOptDefVal = "true"
		default:
			panic(fmt.Sprintf("flag %s: unsupported field type %T", ff.name, p))
		}
	}
	return f
}

// Apply copies every flag the user set onto c: flags win over the file.
func (f *Flags) Apply(c *ControlPlane) {
	for _, ff := range controlPlaneFlags {
		if !f.set.Changed(ff.name) {
			continue
		}
		switch dst := ff.field(c).(type) {
		case *string:
			*dst = *ff.field(&f.values).(*string)
		case *int:
			*dst = *ff.field(&f.values).(*int)
		case *[]string:
			*dst = *ff.field(&f.values).(*[]string)
		case *map[string]string:
			if *dst == nil {
				*dst = map[string]string{}
			}
			maps.Copy(*dst, *ff.field(&f.values).(*map[string]string))
		case *map[string]bool:
			if *dst == nil {
				*dst = map[string]bool{}
			}
			maps.Copy(*dst, *ff.field(&f.values).(*map[string]bool))
		case **bool:
			*dst = *ff.field(&f.values).(**bool)
		case *metav1.Duration:
			*dst = *ff.field(&f.values).(*metav1.Duration)
		}
	}
}

// keyValues collects repeated key=value flags; values may contain commas.
type keyValues struct{ m *map[string]string }

func (k *keyValues) String() string {
	if k.m == nil || *k.m == nil {
		return ""
	}
	var parts []string
	for _, key := range slices.Sorted(maps.Keys(*k.m)) {
		parts = append(parts, key+"="+(*k.m)[key])
	}
	return strings.Join(parts, " ")
}

func (k *keyValues) Set(s string) error {
	key, value, ok := strings.Cut(s, "=")
	key = strings.TrimLeft(key, "-")
	if !ok || key == "" {
		return fmt.Errorf("%q must be key=value, e.g. v=2", s)
	}
	if *k.m == nil {
		*k.m = map[string]string{}
	}
	(*k.m)[key] = value
	return nil
}

func (k *keyValues) Type() string { return "key=value" }

// gates parses Name=true,Other=false.
type gates struct{ m *map[string]bool }

func (g *gates) String() string { return "" }

func (g *gates) Set(s string) error {
	if *g.m == nil {
		*g.m = map[string]bool{}
	}
	for _, part := range strings.Split(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		enabled, err := strconv.ParseBool(value)
		if !ok || name == "" || err != nil {
			return fmt.Errorf("%q must be Name=true or Name=false", part)
		}
		(*g.m)[name] = enabled
	}
	return nil
}

func (g *gates) Type() string { return "Name=bool,..." }

// optionalBool sets a *bool so "not given" stays distinguishable from false.
type optionalBool struct{ p **bool }

func (o *optionalBool) String() string {
	if o.p == nil || *o.p == nil {
		return ""
	}
	return strconv.FormatBool(**o.p)
}

func (o *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q must be true or false", s)
	}
	*o.p = &v
	return nil
}

func (o *optionalBool) Type() string { return "bool" }
