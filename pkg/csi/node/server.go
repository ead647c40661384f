package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/pool"
)

// Volume context keys the kubelet sets for CSI inline ephemeral volumes.
const (
	contextEphemeral = "csi.storage.k8s.io/ephemeral"
	contextSize      = "size"
	// defaultEphemeralSize applies when an inline volume names no size.
	defaultEphemeralSize = 1 << 30
)

// maxVolumes is the NodeGetInfo figure: btrfs holds many subvolumes, while
// loop-ext4 is bound by the loop devices (one per volume).
func maxVolumes(backend string) int64 {
	if backend == pool.BackendBtrfs {
		return 1000
	}
	return 256
}

// Server is the CSI Node service over a pool.
type Server struct {
	csipb.UnimplementedNodeServer
	NodeName  string
	Pool      pool.Pool
	Ephemeral *EphemeralState
	// Changed, when set, is called after a volume was made or removed.
	Changed func()

	mu sync.Mutex // one volume operation at a time
}

func (s *Server) changed() {
	if s.Changed != nil {
		s.Changed()
	}
}

func (s *Server) NodeGetInfo(context.Context, *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	return &csipb.NodeGetInfoResponse{
		NodeId:             s.NodeName,
		MaxVolumesPerNode:  maxVolumes(s.Pool.Backend()),
		AccessibleTopology: &csipb.Topology{Segments: map[string]string{csi.TopologyKey: s.NodeName}},
	}, nil
}

func (s *Server) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	var caps []*csipb.NodeServiceCapability
	for _, t := range []csipb.NodeServiceCapability_RPC_Type{
		csipb.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csipb.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csipb.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csipb.NodeServiceCapability_RPC_VOLUME_CONDITION,
	} {
		caps = append(caps, &csipb.NodeServiceCapability{Type: &csipb.NodeServiceCapability_Rpc{Rpc: &csipb.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csipb.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// volume looks a volume up, mapping pool errors to gRPC codes.
func (s *Server) volume(id string) (pool.Volume, error) {
	if id == "" {
		return pool.Volume{}, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	v, err := s.Pool.Volume(id)
	if errors.Is(err, pool.ErrNotFound) || pool.CheckID(id) != nil {
		return pool.Volume{}, status.Errorf(codes.NotFound, "volume %s is not on node %s", id, s.NodeName)
	}
	if err != nil {
		return pool.Volume{}, status.Error(codes.Internal, err.Error())
	}
	return v, nil
}

// checkAccess refuses a capability the volume cannot serve.
func checkAccess(v pool.Volume, c *csipb.VolumeCapability) error {
	if c == nil {
		return status.Error(codes.InvalidArgument, "volume_capability is required")
	}
	if c.GetBlock() == nil && c.GetMount() == nil {
		return status.Error(codes.InvalidArgument, "volume_capability needs an access type (mount or block)")
	}
	if c.GetBlock() != nil && !v.Block() {
		return status.Errorf(codes.InvalidArgument, "volume %s is a filesystem volume; it cannot be used as a block device", v.ID)
	}
	if c.GetMount() != nil && v.Block() {
		return status.Errorf(codes.InvalidArgument, "volume %s is a block volume; it cannot be mounted as a filesystem", v.ID)
	}
	if m := c.GetAccessMode().GetMode(); m != csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER &&
		m != csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY &&
		m != csipb.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER &&
		m != csipb.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER {
		return status.Errorf(codes.InvalidArgument, "access mode %s is not offered: volumes live on one node", m)
	}
	return nil
}

func (s *Server) NodeStageVolume(_ context.Context, req *csipb.NodeStageVolumeRequest) (*csipb.NodeStageVolumeResponse, error) {
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "staging_target_path is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if err := checkAccess(v, req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	if v.Block() {
		// The device is made here and published by bind-mounting it.
		if _, err := pool.LoopDevice(v.BlockFile); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &csipb.NodeStageVolumeResponse{}, nil
	}
	if err := bindMount(v.Dir, req.GetStagingTargetPath(), false, true); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csipb.NodeStageVolumeResponse{}, nil
}

func (s *Server) NodeUnstageVolume(_ context.Context, req *csipb.NodeUnstageVolumeRequest) (*csipb.NodeUnstageVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id and staging_target_path are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := unmount(req.GetStagingTargetPath()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v, err := s.Pool.Volume(req.GetVolumeId()); err == nil && v.Block() {
		if err := pool.DetachLoopDevice(v.BlockFile); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return &csipb.NodeUnstageVolumeResponse{}, nil
}

func (s *Server) NodePublishVolume(_ context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target_path is required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume_capability is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.GetVolumeContext()[contextEphemeral] == "true" {
		return s.publishEphemeral(req)
	}
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "staging_target_path is required")
	}
	v, err := s.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if err := checkAccess(v, req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	readOnly := req.GetReadonly() || req.GetVolumeCapability().GetAccessMode().GetMode() == csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	if v.Block() {
		dev, err := pool.LoopDevice(v.BlockFile)
		if err == nil {
			err = bindMount(dev, target, readOnly, false)
		}
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &csipb.NodePublishVolumeResponse{}, nil
	}
	if !isMounted(req.GetStagingTargetPath()) {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s", v.ID, req.GetStagingTargetPath())
	}
	if err := bindMount(req.GetStagingTargetPath(), target, readOnly, true); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

// publishEphemeral makes an inline ephemeral volume on this node and mounts
// it at the target; NodeUnpublishVolume removes it again.
func (s *Server) publishEphemeral(req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	if req.GetVolumeCapability().GetMount() == nil {
		return nil, status.Error(codes.InvalidArgument, "inline ephemeral volumes are filesystem volumes only")
	}
	size := int64(defaultEphemeralSize)
	if text, ok := req.GetVolumeContext()[contextSize]; ok {
		q, err := resource.ParseQuantity(text)
		if err != nil || q.Value() <= 0 {
			return nil, status.Errorf(codes.InvalidArgument, "volumeAttributes size %q: must be a positive size such as 1Gi", text)
		}
		size = q.Value()
	}
	id := req.GetVolumeId()
	if err := pool.CheckID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.Ephemeral.Add(id); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	v, err := s.Pool.CreateVolume(id, pool.VolumeRequest{CapacityBytes: size})
	if errors.Is(err, pool.ErrOutOfSpace) {
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.changed()
	if err := bindMount(v.Dir, req.GetTargetPath(), req.GetReadonly(), true); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

func (s *Server) NodeUnpublishVolume(_ context.Context, req *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id and target_path are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := unmount(req.GetTargetPath()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.Remove(req.GetTargetPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if s.Ephemeral.Has(req.GetVolumeId()) {
		if err := s.Pool.DeleteVolume(req.GetVolumeId()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if err := s.Ephemeral.Remove(req.GetVolumeId()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		s.changed()
	}
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}

func (s *Server) NodeGetVolumeStats(_ context.Context, req *csipb.NodeGetVolumeStatsRequest) (*csipb.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	v, err := s.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(req.GetVolumePath()); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume path %s: %v", req.GetVolumePath(), err)
	}
	condition := &csipb.VolumeCondition{Message: "volume is healthy"}
	if !isMounted(req.GetVolumePath()) {
		condition = &csipb.VolumeCondition{Abnormal: true, Message: "nothing is mounted at " + req.GetVolumePath()}
	}
	if v.Block() {
		return &csipb.NodeGetVolumeStatsResponse{
			Usage:           []*csipb.VolumeUsage{{Unit: csipb.VolumeUsage_BYTES, Total: v.CapacityBytes}},
			VolumeCondition: condition,
		}, nil
	}
	usage := []*csipb.VolumeUsage{{
		Unit: csipb.VolumeUsage_BYTES, Total: v.CapacityBytes, Used: v.UsedBytes,
		Available: max(v.CapacityBytes-v.UsedBytes, 0),
	}}
	var fs unix.Statfs_t
	if unix.Statfs(v.Dir, &fs) == nil && fs.Files > 0 {
		usage = append(usage, &csipb.VolumeUsage{Unit: csipb.VolumeUsage_INODES,
			Total: int64(fs.Files), Used: int64(fs.Files - fs.Ffree), Available: int64(fs.Ffree)})
	}
	return &csipb.NodeGetVolumeStatsResponse{Usage: usage, VolumeCondition: condition}, nil
}

func (s *Server) NodeExpandVolume(_ context.Context, req *csipb.NodeExpandVolumeRequest) (*csipb.NodeExpandVolumeResponse, error) {
	if req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(req.GetVolumePath()); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume path %s: %v", req.GetVolumePath(), err)
	}
	if want := req.GetCapacityRange().GetRequiredBytes(); want > v.CapacityBytes {
		v, err = s.Pool.ResizeVolume(v.ID, want)
		if errors.Is(err, pool.ErrOutOfSpace) {
			return nil, status.Error(codes.OutOfRange, err.Error())
		}
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		s.changed()
	}
	return &csipb.NodeExpandVolumeResponse{CapacityBytes: v.CapacityBytes}, nil
}

// bindMount mounts src at target (a directory, or a file for a device),
// creating target; an existing mount there is kept.
func bindMount(src, target string, readOnly, dir bool) error {
	if isMounted(target) {
		return nil
	}
	if dir {
		if err := os.MkdirAll(target, 0o750); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s at %s: %w", src, target, err)
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return fmt.Errorf("make %s read-only: %w", target, err)
		}
	}
	return nil
}

// unmount unmounts target while something is mounted there.
func unmount(target string) error {
	for isMounted(target) {
		if err := unix.Unmount(target, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return nil
}

func isMounted(path string) bool {
	mounts, err := pool.MountPoints()
	if err != nil {
		return false
	}
	clean := filepath.Clean(path)
	for _, m := range mounts {
		if m == clean {
			return true
		}
	}
	return false
}
