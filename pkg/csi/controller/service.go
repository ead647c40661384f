// Package controller is the control-plane half of the CSI driver: the CSI
// Controller service over the Volume and Snapshot objects each node
// reconciles, and the in-process controllers that call it (provisioning,
// resizing, snapshots, capacity, garbage collection).
package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
)

const (
	// DefaultVolumeSize is used when a request names no size.
	DefaultVolumeSize = 1 << 30
	// NodeParameter pins a volume to a node when the request carries no
	// topology (csi-sanity, or an admin's StorageClass for one node).
	NodeParameter = "csi.vcluster-standalone.io/node"
	// defaultWait bounds a call that waits for a node when the caller set no deadline.
	defaultWait = 2 * time.Minute
)

// Service is the CSI Controller service.
type Service struct {
	csipb.UnimplementedControllerServer
	store *store
}

func newService(s *store) *Service { return &Service{store: s} }

func (s *Service) ControllerGetCapabilities(context.Context, *csipb.ControllerGetCapabilitiesRequest) (*csipb.ControllerGetCapabilitiesResponse, error) {
	var caps []*csipb.ControllerServiceCapability
	for _, t := range []csipb.ControllerServiceCapability_RPC_Type{
		csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csipb.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csipb.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csipb.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csipb.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csipb.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csipb.ControllerServiceCapability_RPC_GET_CAPACITY,
	} {
		caps = append(caps, &csipb.ControllerServiceCapability{Type: &csipb.ControllerServiceCapability_Rpc{
			Rpc: &csipb.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csipb.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// withWait gives ctx a deadline when it has none.
func withWait(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultWait)
}

// checkCapabilities refuses what the driver does not offer: every volume
// lives on one node, so only single-node access modes.
func checkCapabilities(caps []*csipb.VolumeCapability) (api.AccessType, error) {
	if len(caps) == 0 {
		return "", status.Error(codes.InvalidArgument, "volume capabilities are missing")
	}
	accessType := api.AccessType("")
	for _, c := range caps {
		if c.GetAccessMode() == nil {
			return "", status.Error(codes.InvalidArgument, "a volume capability has no access mode")
		}
		switch c.GetAccessMode().GetMode() {
		case csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
			csipb.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, csipb.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		default:
			return "", status.Errorf(codes.InvalidArgument, "access mode %s is not supported: volumes live on one node, so only ReadWriteOnce, ReadOnlyMany on one node and ReadWriteOncePod are offered", c.GetAccessMode().GetMode())
		}
		t := api.AccessMount
		switch {
		case c.GetBlock() != nil:
			t = api.AccessBlock
		case c.GetMount() == nil:
			return "", status.Error(codes.InvalidArgument, "a volume capability has neither mount nor block access type")
		}
		if accessType != "" && accessType != t {
			return "", status.Error(codes.InvalidArgument, "a volume cannot be both mount and block")
		}
		accessType = t
	}
	return accessType, nil
}

// requestedSize picks the size to create from a capacity range.
func requestedSize(r *csipb.CapacityRange) (int64, error) {
	required, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case required < 0 || limit < 0:
		return 0, status.Error(codes.InvalidArgument, "capacity range must not be negative")
	case limit > 0 && required > limit:
		return 0, status.Errorf(codes.OutOfRange, "required bytes %d exceed limit bytes %d", required, limit)
	case required > 0:
		return required, nil
	case limit > 0 && limit < DefaultVolumeSize:
		return limit, nil
	}
	return DefaultVolumeSize, nil
}

func (s *Service) CreateVolume(ctx context.Context, req *csipb.CreateVolumeRequest) (*csipb.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume name is missing")
	}
	accessType, err := checkCapabilities(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	size, err := requestedSize(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	ctx, cancel := withWait(ctx)
	defer cancel()
	id := objectID("vol", req.GetName())
	source, sourceNode, err := s.volumeSource(ctx, req.GetVolumeContentSource(), size)
	if err != nil {
		return nil, err
	}

	vol, err := s.store.volumes.Get(ctx, id)
	switch {
	case apierrors.IsNotFound(err):
		node := sourceNode
		if node == "" {
			if node, err = s.pickNode(ctx, req); err != nil {
				return nil, err
			}
		} else if !topologyAllows(req.GetAccessibilityRequirements(), node) {
			return nil, status.Errorf(codes.ResourceExhausted, "the source of volume %s is on node %s, which the topology requirement excludes", req.GetName(), node)
		}
		vol = &api.Volume{
			ObjectMeta: metav1.ObjectMeta{Name: id, Finalizers: []string{csi.Finalizer}},
			Spec:       api.VolumeSpec{Node: node, CapacityBytes: size, AccessType: accessType, Source: source},
		}
		if id != req.GetName() {
			vol.Annotations = map[string]string{nameAnnotation: req.GetName()}
		}
		if vol, err = s.store.volumes.Create(ctx, vol); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, status.Errorf(codes.Internal, "create Volume %s: %v", id, err)
		} else if err != nil {
			return s.CreateVolume(ctx, req)
		}
	case err != nil:
		return nil, status.Errorf(codes.Internal, "read Volume %s: %v", id, err)
	default:
		if vol.Spec.CapacityBytes != size && !(vol.Spec.CapacityBytes >= size && req.GetCapacityRange().GetLimitBytes() == 0) ||
			vol.Spec.AccessType != accessType || !sameSource(vol.Spec.Source, source) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with another size, access type or source", req.GetName())
		}
	}

	ready, err := s.waitVolumeReady(ctx, id)
	if err != nil {
		return nil, err
	}
	return &csipb.CreateVolumeResponse{Volume: volumeToCSI(ready, req.GetVolumeContentSource())}, nil
}

// waitVolumeReady waits for the node's report on id. A failed volume is
// deleted so a retry (maybe on another node) starts afresh.
func (s *Service) waitVolumeReady(ctx context.Context, id string) (*api.Volume, error) {
	var ready *api.Volume
	var failed *api.Volume
	err := s.store.volumes.Wait(ctx, id, func(v *api.Volume) (bool, error) {
		switch {
		case v == nil || v.DeletionTimestamp != nil:
			return false, status.Errorf(codes.Aborted, "volume %s was deleted while being created", id)
		case v.Status.Phase == api.VolumeReady && v.Status.ObservedGeneration >= v.Generation:
			ready = v
			return true, nil
		case v.Status.Phase == api.VolumeFailed && v.Status.ObservedGeneration >= v.Generation:
			failed = v
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return nil, err
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, status.Errorf(codes.DeadlineExceeded, "volume %s: its node has not reported it ready yet", id)
		}
		return nil, status.Errorf(codes.Internal, "wait for volume %s: %v", id, err)
	}
	if failed != nil {
		if err := s.store.volumes.Delete(context.WithoutCancel(ctx), id); err != nil {
			return nil, status.Errorf(codes.Internal, "volume %s failed (%s) and could not be deleted: %v", id, failed.Status.Message, err)
		}
		code := codes.Internal
		switch failed.Status.Reason {
		case api.ReasonOutOfSpace:
			code = codes.ResourceExhausted
		case api.ReasonSourceNotFound:
			code = codes.NotFound
		}
		return nil, status.Errorf(code, "node %s could not create volume %s: %s: %s", failed.Spec.Node, id, failed.Status.Reason, failed.Status.Message)
	}
	return ready, nil
}

func sameSource(a, b *api.VolumeSource) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// volumeSource resolves a clone or restore source, which fixes the node.
func (s *Service) volumeSource(ctx context.Context, src *csipb.VolumeContentSource, size int64) (*api.VolumeSource, string, error) {
	switch {
	case src == nil:
		return nil, "", nil
	case src.GetSnapshot() != nil:
		id := src.GetSnapshot().GetSnapshotId()
		snap, err := s.store.snapshots.Get(ctx, id)
		if apierrors.IsNotFound(err) || (err == nil && snap.DeletionTimestamp != nil) {
			return nil, "", status.Errorf(codes.NotFound, "source snapshot %s not found", id)
		} else if err != nil {
			return nil, "", status.Errorf(codes.Internal, "read Snapshot %s: %v", id, err)
		}
		if snap.Status.SizeBytes > size {
			return nil, "", status.Errorf(codes.OutOfRange, "snapshot %s holds %d bytes, more than the requested %d", id, snap.Status.SizeBytes, size)
		}
		return &api.VolumeSource{Kind: api.SourceSnapshot, Name: id}, snap.Spec.Node, nil
	case src.GetVolume() != nil:
		id := src.GetVolume().GetVolumeId()
		vol, err := s.store.volumes.Get(ctx, id)
		if apierrors.IsNotFound(err) || (err == nil && vol.DeletionTimestamp != nil) {
			return nil, "", status.Errorf(codes.NotFound, "source volume %s not found", id)
		} else if err != nil {
			return nil, "", status.Errorf(codes.Internal, "read Volume %s: %v", id, err)
		}
		if vol.Spec.CapacityBytes > size {
			return nil, "", status.Errorf(codes.OutOfRange, "source volume %s is %d bytes, larger than the requested %d", id, vol.Spec.CapacityBytes, size)
		}
		return &api.VolumeSource{Kind: api.SourceVolume, Name: id}, vol.Spec.Node, nil
	}
	return nil, "", status.Error(codes.InvalidArgument, "volume content source is neither a snapshot nor a volume")
}

// pickNode chooses the node: the parameter, else the preferred then the
// requisite topology, else the pool with the most free space.
func (s *Service) pickNode(ctx context.Context, req *csipb.CreateVolumeRequest) (string, error) {
	if node := req.GetParameters()[NodeParameter]; node != "" {
		return node, nil
	}
	tr := req.GetAccessibilityRequirements()
	for _, segments := range [][]*csipb.Topology{tr.GetPreferred(), tr.GetRequisite()} {
		for _, t := range segments {
			if node := t.GetSegments()[csi.TopologyKey]; node != "" {
				return node, nil
			}
		}
	}
	pools, err := s.store.pools.List(ctx)
	if err != nil {
		return "", status.Errorf(codes.Internal, "list Pools: %v", err)
	}
	if len(pools) == 0 {
		return "", status.Error(codes.ResourceExhausted, "no node has a storage pool yet")
	}
	best := slices.MaxFunc(pools, func(a, b *api.Pool) int { return cmp.Compare(a.Status.FreeBytes, b.Status.FreeBytes) })
	return best.Name, nil
}

func topologyAllows(tr *csipb.TopologyRequirement, node string) bool {
	if len(tr.GetRequisite()) == 0 {
		return true
	}
	for _, t := range tr.GetRequisite() {
		if t.GetSegments()[csi.TopologyKey] == node {
			return true
		}
	}
	return false
}

func volumeToCSI(v *api.Volume, src *csipb.VolumeContentSource) *csipb.Volume {
	capacity := v.Status.CapacityBytes
	if capacity == 0 {
		capacity = v.Spec.CapacityBytes
	}
	return &csipb.Volume{
		VolumeId:           v.Name,
		CapacityBytes:      capacity,
		AccessibleTopology: []*csipb.Topology{{Segments: map[string]string{csi.TopologyKey: v.Spec.Node}}},
		ContentSource:      src,
		VolumeContext:      map[string]string{"accessType": string(v.Spec.AccessType)},
	}
}

func (s *Service) DeleteVolume(ctx context.Context, req *csipb.DeleteVolumeRequest) (*csipb.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is missing")
	}
	ctx, cancel := withWait(ctx)
	defer cancel()
	if err := s.store.volumes.Delete(ctx, id); err != nil {
		return nil, status.Errorf(codes.Internal, "delete Volume %s: %v", id, err)
	}
	if err := s.store.volumes.Wait(ctx, id, func(v *api.Volume) (bool, error) { return v == nil, nil }); err != nil {
		return nil, status.Errorf(codes.DeadlineExceeded, "volume %s: its node has not removed it yet: %v", id, err)
	}
	return &csipb.DeleteVolumeResponse{}, nil
}

func (s *Service) ControllerExpandVolume(ctx context.Context, req *csipb.ControllerExpandVolumeRequest) (*csipb.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is missing")
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity range is missing")
	}
	size, err := requestedSize(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	ctx, cancel := withWait(ctx)
	defer cancel()
	vol, err := s.store.volumes.Get(ctx, id)
	if apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	} else if err != nil {
		return nil, status.Errorf(codes.Internal, "read Volume %s: %v", id, err)
	}
	if size > vol.Spec.CapacityBytes {
		if err := s.store.volumes.MergePatch(ctx, id, map[string]any{"spec": map[string]any{"capacityBytes": size}}); err != nil {
			return nil, status.Errorf(codes.Internal, "raise Volume %s to %d bytes: %v", id, size, err)
		}
	}
	var done *api.Volume
	err = s.store.volumes.Wait(ctx, id, func(v *api.Volume) (bool, error) {
		switch {
		case v == nil:
			return false, status.Errorf(codes.NotFound, "volume %s was deleted", id)
		case v.Status.CapacityBytes >= size:
			done = v
			return true, nil
		case v.Status.Phase == api.VolumeFailed && v.Status.ObservedGeneration >= v.Generation:
			code := codes.Internal
			if v.Status.Reason == api.ReasonOutOfSpace {
				code = codes.ResourceExhausted
			}
			return false, status.Errorf(code, "node %s could not grow volume %s: %s", v.Spec.Node, id, v.Status.Message)
		}
		return false, nil
	})
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.DeadlineExceeded, "volume %s: its node has not applied %d bytes yet: %v", id, size, err)
	}
	nodeExpansion := done.Spec.AccessType == api.AccessBlock
	if pool, err := s.store.pools.Get(ctx, done.Spec.Node); err == nil && pool.Status.Backend == api.BackendLoopExt4 {
		nodeExpansion = true
	}
	return &csipb.ControllerExpandVolumeResponse{CapacityBytes: done.Status.CapacityBytes, NodeExpansionRequired: nodeExpansion}, nil
}

func (s *Service) ValidateVolumeCapabilities(ctx context.Context, req *csipb.ValidateVolumeCapabilitiesRequest) (*csipb.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are missing")
	}
	vol, err := s.store.volumes.Get(ctx, req.GetVolumeId())
	if apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	} else if err != nil {
		return nil, status.Errorf(codes.Internal, "read Volume %s: %v", req.GetVolumeId(), err)
	}
	accessType, err := checkCapabilities(req.GetVolumeCapabilities())
	if err != nil || accessType != vol.Spec.AccessType {
		msg := fmt.Sprintf("volume %s is a %s volume", vol.Name, vol.Spec.AccessType)
		if err != nil {
			msg = status.Convert(err).Message()
		}
		return &csipb.ValidateVolumeCapabilitiesResponse{Message: msg}, nil
	}
	return &csipb.ValidateVolumeCapabilitiesResponse{Confirmed: &csipb.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters()}}, nil
}

// page cuts items at a numeric starting token; a token that is not a
// position in the list is refused with Aborted, as the spec says.
func page[T any](items []T, token string, max int32) ([]T, string, error) {
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", status.Errorf(codes.Aborted, "starting token %q is not valid", token)
		}
		start = n
	}
	if max < 0 {
		return nil, "", status.Error(codes.InvalidArgument, "max entries must not be negative")
	}
	end := len(items)
	if max > 0 && start+int(max) < end {
		end = start + int(max)
	}
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}

func (s *Service) ListVolumes(ctx context.Context, req *csipb.ListVolumesRequest) (*csipb.ListVolumesResponse, error) {
	vols, err := s.store.volumes.List(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list Volumes: %v", err)
	}
	slices.SortFunc(vols, func(a, b *api.Volume) int { return cmp.Compare(a.Name, b.Name) })
	vols, next, err := page(vols, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csipb.ListVolumesResponse{NextToken: next}
	for _, v := range vols {
		entry := &csipb.ListVolumesResponse_Entry{Volume: volumeToCSI(v, nil)}
		if v.Status.Phase == api.VolumeFailed {
			entry.Status = &csipb.ListVolumesResponse_VolumeStatus{VolumeCondition: &csipb.VolumeCondition{Abnormal: true, Message: v.Status.Message}}
		}
		resp.Entries = append(resp.Entries, entry)
	}
	return resp, nil
}

func (s *Service) GetCapacity(ctx context.Context, req *csipb.GetCapacityRequest) (*csipb.GetCapacityResponse, error) {
	if _, err := checkCapabilitiesIfAny(req.GetVolumeCapabilities()); err != nil {
		return &csipb.GetCapacityResponse{}, nil
	}
	pools, err := s.store.pools.List(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list Pools: %v", err)
	}
	node := req.GetAccessibleTopology().GetSegments()[csi.TopologyKey]
	resp := &csipb.GetCapacityResponse{}
	for _, p := range pools {
		if node != "" && p.Name != node {
			continue
		}
		resp.AvailableCapacity += p.Status.FreeBytes
		if p.Status.MaxVolumeSizeBytes > resp.GetMaximumVolumeSize().GetValue() {
			resp.MaximumVolumeSize = wrapperspb.Int64(p.Status.MaxVolumeSizeBytes)
		}
	}
	return resp, nil
}

func checkCapabilitiesIfAny(caps []*csipb.VolumeCapability) (api.AccessType, error) {
	if len(caps) == 0 {
		return "", nil
	}
	return checkCapabilities(caps)
}

func (s *Service) CreateSnapshot(ctx context.Context, req *csipb.CreateSnapshotRequest) (*csipb.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot name is missing")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume id is missing")
	}
	ctx, cancel := withWait(ctx)
	defer cancel()
	id := objectID("snap", req.GetName())
	snap, err := s.store.snapshots.Get(ctx, id)
	switch {
	case apierrors.IsNotFound(err):
		vol, err := s.store.volumes.Get(ctx, req.GetSourceVolumeId())
		if apierrors.IsNotFound(err) {
			return nil, status.Errorf(codes.NotFound, "source volume %s not found", req.GetSourceVolumeId())
		} else if err != nil {
			return nil, status.Errorf(codes.Internal, "read Volume %s: %v", req.GetSourceVolumeId(), err)
		}
		snap = &api.Snapshot{
			ObjectMeta: metav1.ObjectMeta{Name: id, Finalizers: []string{csi.Finalizer}},
			Spec:       api.SnapshotSpec{Node: vol.Spec.Node, SourceVolume: vol.Name},
		}
		if id != req.GetName() {
			snap.Annotations = map[string]string{nameAnnotation: req.GetName()}
		}
		if _, err := s.store.snapshots.Create(ctx, snap); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, status.Errorf(codes.Internal, "create Snapshot %s: %v", id, err)
		}
	case err != nil:
		return nil, status.Errorf(codes.Internal, "read Snapshot %s: %v", id, err)
	case snap.Spec.SourceVolume != req.GetSourceVolumeId():
		return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for another volume, %s", req.GetName(), snap.Spec.SourceVolume)
	}
	var ready *api.Snapshot
	err = s.store.snapshots.Wait(ctx, id, func(sn *api.Snapshot) (bool, error) {
		switch {
		case sn == nil:
			return false, status.Errorf(codes.Aborted, "snapshot %s was deleted while being created", id)
		case sn.Status.ReadyToUse:
			ready = sn
			return true, nil
		case sn.Status.Reason != "":
			return false, status.Errorf(codes.Internal, "node %s could not snapshot volume %s: %s: %s", sn.Spec.Node, sn.Spec.SourceVolume, sn.Status.Reason, sn.Status.Message)
		}
		return false, nil
	})
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.DeadlineExceeded, "snapshot %s: its node has not reported it ready yet: %v", id, err)
	}
	return &csipb.CreateSnapshotResponse{Snapshot: snapshotToCSI(ready)}, nil
}

func snapshotToCSI(sn *api.Snapshot) *csipb.Snapshot {
	created := sn.CreationTimestamp.Time
	if t, err := time.Parse(time.RFC3339, sn.Status.CreationTime); err == nil {
		created = t
	}
	return &csipb.Snapshot{
		SnapshotId: sn.Name, SourceVolumeId: sn.Spec.SourceVolume, SizeBytes: sn.Status.SizeBytes,
		CreationTime: timestamppb.New(created), ReadyToUse: sn.Status.ReadyToUse,
	}
}

func (s *Service) DeleteSnapshot(ctx context.Context, req *csipb.DeleteSnapshotRequest) (*csipb.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot id is missing")
	}
	ctx, cancel := withWait(ctx)
	defer cancel()
	if err := s.store.snapshots.Delete(ctx, id); err != nil {
		return nil, status.Errorf(codes.Internal, "delete Snapshot %s: %v", id, err)
	}
	if err := s.store.snapshots.Wait(ctx, id, func(sn *api.Snapshot) (bool, error) { return sn == nil, nil }); err != nil {
		return nil, status.Errorf(codes.DeadlineExceeded, "snapshot %s: its node has not removed it yet: %v", id, err)
	}
	return &csipb.DeleteSnapshotResponse{}, nil
}

func (s *Service) ListSnapshots(ctx context.Context, req *csipb.ListSnapshotsRequest) (*csipb.ListSnapshotsResponse, error) {
	snaps, err := s.store.snapshots.List(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list Snapshots: %v", err)
	}
	snaps = slices.DeleteFunc(snaps, func(sn *api.Snapshot) bool {
		return (req.GetSnapshotId() != "" && sn.Name != req.GetSnapshotId()) ||
			(req.GetSourceVolumeId() != "" && sn.Spec.SourceVolume != req.GetSourceVolumeId())
	})
	slices.SortFunc(snaps, func(a, b *api.Snapshot) int { return cmp.Compare(a.Name, b.Name) })
	snaps, next, err := page(snaps, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csipb.ListSnapshotsResponse{NextToken: next}
	for _, sn := range snaps {
		resp.Entries = append(resp.Entries, &csipb.ListSnapshotsResponse_Entry{Snapshot: snapshotToCSI(sn)})
	}
	return resp, nil
}
