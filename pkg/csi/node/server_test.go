package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/pool"
)

const mib = 1 << 20

// testServer is a node service over a real btrfs pool in a temp image,
// reset (unmounted, detached, removed) at the end.
func testServer(t *testing.T) (*Server, string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: the node service mounts and attaches loop devices")
	}
	dir := t.TempDir()
	root, image := filepath.Join(dir, "csi"), filepath.Join(dir, "csi.img")
	p, err := pool.Open(pool.Options{Root: root, Image: image, ImageSize: 512 * mib, Backend: pool.BackendBtrfs})
	if err != nil {
		t.Skip("no btrfs pool here: ", err)
	}
	work := filepath.Join(dir, "kubelet")
	t.Cleanup(func() {
		for _, m := range mustMounts(t) {
			if len(m) > len(work) && m[:len(work)] == work {
				syscall.Unmount(m, syscall.MNT_DETACH)
				t.Errorf("left mounted: %s", m)
			}
		}
		if err := pool.Reset(root, image); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
	eph, err := LoadEphemeralState(filepath.Join(root, "ephemeral.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &Server{NodeName: "node-a", Pool: p, Ephemeral: eph}, work
}

func mustMounts(t *testing.T) []string {
	m, err := pool.MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mountCap(mode csipb.VolumeCapability_AccessMode_Mode) *csipb.VolumeCapability {
	return &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode}}
}

func blockCap() *csipb.VolumeCapability {
	return &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
}

func TestNodeServiceMountVolume(t *testing.T) {
	s, work := testServer(t)
	ctx := context.Background()
	info, _ := s.NodeGetInfo(ctx, nil)
	if info.NodeId != "node-a" || info.AccessibleTopology.Segments[csi.TopologyKey] != "node-a" || info.MaxVolumesPerNode <= 0 {
		t.Fatalf("node info %+v", info)
	}
	if _, err := s.Pool.CreateVolume("vol-1", pool.VolumeRequest{CapacityBytes: 64 * mib}); err != nil {
		t.Fatal(err)
	}
	rw := mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	staging, target, roTarget := filepath.Join(work, "staging"), filepath.Join(work, "pod1"), filepath.Join(work, "pod2")

	_, err := s.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "nope", StagingTargetPath: staging, VolumeCapability: rw})
	wantCode(t, err, codes.NotFound)
	_, err = s.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging, VolumeCapability: blockCap()})
	wantCode(t, err, codes.InvalidArgument)
	_, err = s.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging,
		VolumeCapability: mountCap(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)})
	wantCode(t, err, codes.InvalidArgument)

	for range 2 { // idempotent
		if _, err := s.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging, VolumeCapability: rw}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging, TargetPath: target, VolumeCapability: rw}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging, TargetPath: roTarget, VolumeCapability: rw, Readonly: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "hello"), make([]byte, 8*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(roTarget, "hello")); err != nil {
		t.Fatalf("the read-only publish does not show the file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(roTarget, "x"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write to the read-only publish: %v, want EROFS", err)
	}

	st, err := s.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "vol-1", VolumePath: target})
	if err != nil {
		t.Fatal(err)
	}
	u := st.Usage[0]
	if u.Total != 64*mib || u.Used < 8*mib || u.Used > 10*mib || u.Available != u.Total-u.Used || st.VolumeCondition.Abnormal {
		t.Fatalf("stats %+v, condition %+v: want total 64MiB, used ~8MiB from the qgroup", u, st.VolumeCondition)
	}

	exp, err := s.NodeExpandVolume(ctx, &csipb.NodeExpandVolumeRequest{VolumeId: "vol-1", VolumePath: target, CapacityRange: &csipb.CapacityRange{RequiredBytes: 96 * mib}})
	if err != nil || exp.CapacityBytes != 96*mib {
		t.Fatalf("expand: %+v, %v", exp, err)
	}

	for _, p := range []string{target, roTarget} {
		for range 2 {
			if _, err := s.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: p}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("target %s still there after unpublish", p)
		}
	}
	if _, err := s.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if isMounted(staging) {
		t.Fatal("staging path still mounted")
	}
	// The data stays in the volume.
	v, _ := s.Pool.Volume("vol-1")
	if _, err := os.Stat(filepath.Join(v.Dir, "hello")); err != nil {
		t.Fatalf("data gone after unstage: %v", err)
	}
}

func TestNodeServiceBlockVolume(t *testing.T) {
	s, work := testServer(t)
	ctx := context.Background()
	v, err := s.Pool.CreateVolume("vol-b", pool.VolumeRequest{CapacityBytes: 16 * mib, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	staging, target := filepath.Join(work, "staging-b"), filepath.Join(work, "pod", "dev")
	if _, err := s.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "vol-b", StagingTargetPath: staging, VolumeCapability: mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("mount capability on a block volume: %v", err)
	}
	if _, err := s.NodeStageVolume(ctx, &csipb.NodeStageVolumeRequest{VolumeId: "vol-b", StagingTargetPath: staging, VolumeCapability: blockCap()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "vol-b", StagingTargetPath: staging, TargetPath: target, VolumeCapability: blockCap()}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(target)
	if err != nil || fi.Mode()&os.ModeDevice == 0 {
		t.Fatalf("target %v (%v): want a block device", fi, err)
	}
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("block data"), 4096); err != nil {
		t.Fatal(err)
	}
	size, _ := f.Seek(0, 2)
	f.Close()
	if size != 16*mib {
		t.Fatalf("device size %d, want 16MiB", size)
	}
	st, err := s.NodeGetVolumeStats(ctx, &csipb.NodeGetVolumeStatsRequest{VolumeId: "vol-b", VolumePath: target})
	if err != nil || st.Usage[0].Total != 16*mib {
		t.Fatalf("block stats %+v, %v", st, err)
	}
	if _, err := s.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "vol-b", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeUnstageVolume(ctx, &csipb.NodeUnstageVolumeRequest{VolumeId: "vol-b", StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(v.BlockFile)
	if len(data) < 4096+10 || string(data[4096:4106]) != "block data" {
		t.Fatal("the block write did not reach the volume's file")
	}
}

func TestNodeServiceInlineEphemeral(t *testing.T) {
	s, work := testServer(t)
	ctx := context.Background()
	target := filepath.Join(work, "pod-e", "vol")
	rw := mountCap(csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	_, err := s.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "csi-e1", TargetPath: target, VolumeCapability: rw,
		VolumeContext: map[string]string{contextEphemeral: "true", contextSize: "lots"}})
	wantCode(t, err, codes.InvalidArgument)
	if _, err := s.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{VolumeId: "csi-e1", TargetPath: target, VolumeCapability: rw,
		VolumeContext: map[string]string{contextEphemeral: "true", contextSize: "16Mi"}}); err != nil {
		t.Fatal(err)
	}
	v, err := s.Pool.Volume("csi-e1")
	if err != nil || v.CapacityBytes != 16*mib {
		t.Fatalf("ephemeral volume %+v, %v", v, err)
	}
	// Its size is enforced like any volume's.
	f, _ := os.Create(filepath.Join(target, "fill"))
	var werr error
	for i := 0; i < 32 && werr == nil; i++ {
		_, werr = f.Write(make([]byte, mib))
		if werr == nil {
			werr = f.Sync()
		}
	}
	f.Close()
	if !errors.Is(werr, syscall.EDQUOT) && !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 32MiB into a 16Mi inline volume: %v, want EDQUOT", werr)
	}
	again, _ := LoadEphemeralState(filepath.Join(s.Pool.Root(), "ephemeral.json"))
	if !again.Has("csi-e1") {
		t.Fatal("the state file does not record the inline volume")
	}
	if _, err := s.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "csi-e1", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool.Volume("csi-e1"); !errors.Is(err, pool.ErrNotFound) {
		t.Fatalf("inline volume after unpublish: %v, want removed", err)
	}
	if s.Ephemeral.Has("csi-e1") {
		t.Fatal("inline volume still in the state")
	}
}
