package joinnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/nodecreds"
)

// ServiceManager is the part of systemd join needs; Systemctl is the real one.
type ServiceManager interface {
	DaemonReload(ctx context.Context) error
	Enable(ctx context.Context, unit string) error
	Start(ctx context.Context, unit string) error
}

// Systemctl runs the systemctl binary at Path.
type Systemctl struct{ Path string }

func (s Systemctl) run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, s.Path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(strings.ReplaceAll(string(out), "\n", " ")))
	}
	return nil
}

func (s Systemctl) DaemonReload(ctx context.Context) error { return s.run(ctx, "daemon-reload") }
func (s Systemctl) Enable(ctx context.Context, unit string) error {
	return s.run(ctx, "enable", "--quiet", unit)
}
func (s Systemctl) Start(ctx context.Context, unit string) error {
	return s.run(ctx, "restart", "--no-block", unit)
}

// NodeJoin is one `node-agent join`: discovery and TLS bootstrap once, then
// the node's config, credentials and unit. Every path is injectable, so tests
// join a real control plane without touching /etc.
type NodeJoin struct {
	Node         *config.Node // resolved and validated: server, nodeName, dataDir
	ConfigFile   string       // where the node config is written (/etc/node-agent/config.yaml)
	UnitDir      string       // where the unit is written (/etc/systemd/system)
	Unit         []byte       // the unit text, from the binary's embedded units
	Token        string
	CACertHashes []string
	Services     ServiceManager
	// Start starts the service after enabling it; false only enables it.
	Start bool
	// SignatureWait, ConnectTimeout and ApprovalTimeout (default 2 min) bound the waits.
	SignatureWait, ConnectTimeout, ApprovalTimeout time.Duration
	Out                                            io.Writer // progress lines
	Now                                            func() time.Time
}

// NodeJoinResult tells what a join did.
type NodeJoinResult struct {
	AlreadyJoined bool
	CSRName       string
	Discovery     time.Duration // to a verified cluster-info
	Approval      time.Duration // from CSR creation to the issued certificate
	Total         time.Duration
}

// ErrJoinedElsewhere means the node already belongs to another server or name.
var ErrJoinedElsewhere = errors.New("already joined elsewhere")

// Run joins the node. On a node that already joined the same server under the
// same name it says so and changes nothing. A half-finished join (any file
// missing or invalid) is simply done again; the config file is written last.
func (j *NodeJoin) Run(ctx context.Context) (*NodeJoinResult, error) {
	begin := time.Now()
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	token, err := join.ParseBootstrapToken(j.Token)
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{j.Node.DataDir, filepath.Dir(j.ConfigFile), j.UnitDir} {
		if err := checkWritable(dir); err != nil {
			return nil, err
		}
	}
	if done, err := j.alreadyJoined(now()); err != nil {
		return nil, err
	} else if done {
		return &NodeJoinResult{AlreadyJoined: true}, nil
	}

	d := &Discovery{Server: j.Node.Server, Token: token, CACertHashes: j.CACertHashes,
		SignatureWait: j.SignatureWait, ConnectTimeout: j.ConnectTimeout, Now: now}
	cluster, err := d.Discover(ctx)
	if err != nil {
		return nil, err
	}
	res := &NodeJoinResult{Discovery: time.Since(begin)}
	j.say("discovery: cluster-info verified (signed with token %s, CA pinned) in %.2fs", token.ID, res.Discovery.Seconds())

	client, err := BootstrapClient(cluster, token)
	if err != nil {
		return nil, err
	}
	if err := CheckNodeNameFree(ctx, client, j.Node.NodeName); err != nil {
		return nil, err
	}
	// Read with the token over the pinned TLS: it verifies the other nodes'
	// kubelets (their registry mirrors).
	servingCA, err := nodecreds.FetchKubeletServingCA(ctx, client)
	if err != nil {
		return nil, err
	}
	approvalTimeout := j.ApprovalTimeout
	if approvalTimeout <= 0 {
		approvalTimeout = 2 * time.Minute
	}
	approvalCtx, cancel := context.WithTimeout(ctx, approvalTimeout)
	defer cancel()
	csrStart := time.Now()
	cert, err := RequestKubeletClientCert(approvalCtx, client, j.Node.NodeName, cluster.CA)
	if err != nil {
		return nil, err
	}
	res.CSRName, res.Approval = cert.CSRName, time.Since(csrStart)
	j.say("TLS bootstrap: CSR %s for %s%s approved and issued in %.2fs", cert.CSRName, join.NodeUserPrefix, j.Node.NodeName, res.Approval.Seconds())

	if err := j.writeFiles(cluster, servingCA, cert); err != nil {
		return nil, err
	}
	if err := j.enable(ctx); err != nil {
		return nil, err
	}
	res.Total = time.Since(begin)
	j.say("node %s joined %s in %.2fs", j.Node.NodeName, j.Node.Server, res.Total.Seconds())
	return res, nil
}

// alreadyJoined reports whether the node config and valid credentials for
// this server and name are in place. A different server or name is an error.
func (j *NodeJoin) alreadyJoined(now time.Time) (bool, error) {
	existing, err := config.LoadNode(j.ConfigFile, true)
	if err != nil || existing.Server == "" {
		return false, nil // nothing usable: join (again)
	}
	config.SetNodeDefaults(existing, nil)
	cert, err := nodecreds.Check(existing, j.ConfigFile, existing.CAFile(), now)
	if err != nil {
		return false, nil // half-finished or expired: join again
	}
	if existing.Server != j.Node.Server || existing.NodeName != j.Node.NodeName {
		return false, fmt.Errorf("%w: this node already joined %s as %s; reset it (node-agent reset, or vcluster-standalone-uninstall.sh) before joining %s as %s",
			ErrJoinedElsewhere, existing.Server, existing.NodeName, j.Node.Server, j.Node.NodeName)
	}
	j.say("this node already joined %s as %s (client certificate valid until %s); nothing changed",
		existing.Server, existing.NodeName, cert.NotAfter.UTC().Format(time.RFC3339))
	return true, nil
}

// writeFiles writes the node's files (WriteNodeFiles) with what the join
// discovered, read and was issued.
func (j *NodeJoin) writeFiles(cluster *DiscoveredCluster, servingCA []byte, cert *nodecreds.KubeletClientCert) error {
	files := nodecreds.NodeFiles{ConfigFile: j.ConfigFile, UnitDir: j.UnitDir, Unit: j.Unit}
	certFile, err := nodecreds.WriteNodeFiles(j.Node, files, cluster.CAPEM, servingCA, cert)
	if err != nil {
		return err
	}
	j.say("wrote %s, %s (0600), %s and %s", j.ConfigFile, certFile, j.Node.KubeletKubeconfig(), files.UnitPath())
	return nil
}

func (j *NodeJoin) enable(ctx context.Context) error {
	if j.Services == nil {
		return nil
	}
	if err := j.Services.DaemonReload(ctx); err != nil {
		return err
	}
	if err := j.Services.Enable(ctx, join.NodeUnit); err != nil {
		return err
	}
	if !j.Start {
		j.say("%s enabled; it starts at boot (not started now)", join.NodeUnit)
		return nil
	}
	if err := j.Services.Start(ctx, join.NodeUnit); err != nil {
		return err
	}
	j.say("%s enabled and started", join.NodeUnit)
	return nil
}

// checkWritable fails early, before the server is contacted, when dir (or
// its nearest existing parent) cannot be written: usually not running as root.
func checkWritable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			if syscall.Access(p, 2 /* W_OK */) != nil {
				return fmt.Errorf("cannot write to %s: run node-agent join as root", p)
			}
			return nil
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (j *NodeJoin) say(format string, args ...any) {
	if j.Out != nil {
		fmt.Fprintf(j.Out, "[join] "+format+"\n", args...)
	}
}
