package node

import (
	"context"
	"fmt"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/pool"
)

// Status describes node n's storage for `node-agent status`: the pool
// (backend, size, used, free, volumes) and whether the CSI socket answers.
func Status(ctx context.Context, n *config.Node) (bool, string) {
	if !n.StorageEnabled() {
		return true, "disabled (storage: disabled)"
	}
	p, err := pool.Inspect(n.CSIPoolDir())
	if err != nil {
		return false, err.Error()
	}
	st, err := p.Stats()
	if err != nil {
		return false, err.Error()
	}
	detail := fmt.Sprintf("%s at %s: size %s, used %s, free %s, %d volume(s), %d snapshot(s)", st.Backend, p.Root(),
		pool.FormatBytes(st.TotalBytes), pool.FormatBytes(st.UsedBytes), pool.FormatBytes(st.FreeBytes), st.Volumes, st.Snapshots)
	if err := probe(ctx, SocketPath(n.KubeletRoot())); err != nil {
		return false, detail + "; CSI socket: " + err.Error()
	}
	return true, detail + "; CSI socket serving"
}

func probe(ctx context.Context, sock string) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := csipb.NewIdentityClient(conn).Probe(ctx, &csipb.ProbeRequest{})
	if err != nil {
		return err
	}
	if !resp.GetReady().GetValue() {
		return fmt.Errorf("not ready")
	}
	return nil
}
