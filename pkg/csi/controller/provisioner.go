package controller

import (
	"context"
	"fmt"
	"strings"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	provisionlib "sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
)

// fsTypeParameter is the StorageClass parameter external-provisioner uses
// for the filesystem type; we pass it on the same way.
const fsTypeParameter = "csi.storage.k8s.io/fstype"

// provisioner turns PVCs of our StorageClasses into volumes through the
// CSI service in-process, for sig-storage-lib-external-provisioner.
type provisioner struct {
	service   *Service
	client    kubernetes.Interface
	snapshots snapshotclient.Interface
}

var _ provisionlib.BlockProvisioner = &provisioner{}

func (p *provisioner) SupportsBlock(context.Context) bool { return true }

func (p *provisioner) Provision(ctx context.Context, opts provisionlib.ProvisionOptions) (*corev1.PersistentVolume, provisionlib.ProvisioningState, error) {
	claim := opts.PVC
	mode := csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	for _, m := range claim.Spec.AccessModes {
		switch m {
		case corev1.ReadWriteOnce:
		case corev1.ReadWriteOncePod:
			mode = csipb.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
		default:
			return nil, provisionlib.ProvisioningFinished, fmt.Errorf("access mode %s is not offered by %s: its volumes live on one node; use ReadWriteOnce or ReadWriteOncePod", m, csi.DriverName)
		}
	}
	request, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok || request.Sign() <= 0 {
		return nil, provisionlib.ProvisioningFinished, fmt.Errorf("resources.requests.storage must be a positive size such as 1Gi, got %q", request.String())
	}
	capability := &csipb.VolumeCapability{AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode}}
	if claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		capability.AccessType = &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}}
	} else {
		capability.AccessType = &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{
			FsType: opts.StorageClass.Parameters[fsTypeParameter], MountFlags: opts.StorageClass.MountOptions}}
	}
	req := &csipb.CreateVolumeRequest{
		Name:               opts.PVName,
		CapacityRange:      &csipb.CapacityRange{RequiredBytes: request.Value()},
		VolumeCapabilities: []*csipb.VolumeCapability{capability},
		Parameters:         opts.StorageClass.Parameters,
	}
	if opts.SelectedNodeName != "" {
		segment := []*csipb.Topology{{Segments: map[string]string{csi.TopologyKey: opts.SelectedNodeName}}}
		req.AccessibilityRequirements = &csipb.TopologyRequirement{Requisite: segment, Preferred: segment}
	}
	source, err := p.contentSource(ctx, claim)
	if err != nil {
		return nil, provisionlib.ProvisioningFinished, err
	}
	req.VolumeContentSource = source

	resp, err := p.service.CreateVolume(ctx, req)
	if err != nil {
		switch status.Code(err) {
		case codes.ResourceExhausted:
			if opts.SelectedNodeName != "" {
				return nil, provisionlib.ProvisioningReschedule, fmt.Errorf("node %s cannot hold %s: %s", opts.SelectedNodeName, request.String(), status.Convert(err).Message())
			}
		case codes.DeadlineExceeded:
			return nil, provisionlib.ProvisioningInBackground, fmt.Errorf("%s", status.Convert(err).Message())
		}
		return nil, provisionlib.ProvisioningFinished, fmt.Errorf("%s", status.Convert(err).Message())
	}
	vol := resp.GetVolume()
	node := vol.GetAccessibleTopology()[0].GetSegments()[csi.TopologyKey]
	reclaim := corev1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
		Spec: corev1.PersistentVolumeSpec{
			AccessModes:                   claim.Spec.AccessModes,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(vol.GetCapacityBytes(), resource.BinarySI)},
			PersistentVolumeReclaimPolicy: reclaim,
			MountOptions:                  opts.StorageClass.MountOptions,
			VolumeMode:                    claim.Spec.VolumeMode,
			StorageClassName:              opts.StorageClass.Name,
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: csi.DriverName, VolumeHandle: vol.GetVolumeId(), VolumeAttributes: vol.GetVolumeContext(),
				FSType: opts.StorageClass.Parameters[fsTypeParameter],
			}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: csi.TopologyKey, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
	}
	return pv, provisionlib.ProvisioningFinished, nil
}

// contentSource resolves a PVC's dataSource (a PVC to clone or a
// VolumeSnapshot to restore) to the CSI source.
func (p *provisioner) contentSource(ctx context.Context, claim *corev1.PersistentVolumeClaim) (*csipb.VolumeContentSource, error) {
	ref := claim.Spec.DataSourceRef
	if ref == nil && claim.Spec.DataSource != nil {
		ref = &corev1.TypedObjectReference{APIGroup: claim.Spec.DataSource.APIGroup, Kind: claim.Spec.DataSource.Kind, Name: claim.Spec.DataSource.Name}
	}
	if ref == nil {
		return nil, nil
	}
	group := ""
	if ref.APIGroup != nil {
		group = *ref.APIGroup
	}
	if ref.Namespace != nil && *ref.Namespace != claim.Namespace {
		return nil, fmt.Errorf("dataSourceRef in another namespace (%s) is not supported", *ref.Namespace)
	}
	switch {
	case group == "" && ref.Kind == "PersistentVolumeClaim":
		src, err := p.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("clone source PVC %s: %w", ref.Name, err)
		}
		if src.Spec.VolumeName == "" || src.Status.Phase != corev1.ClaimBound {
			return nil, fmt.Errorf("clone source PVC %s is not bound yet", ref.Name)
		}
		pv, err := p.client.CoreV1().PersistentVolumes().Get(ctx, src.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("clone source PV %s: %w", src.Spec.VolumeName, err)
		}
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != csi.DriverName {
			return nil, fmt.Errorf("clone source PVC %s is not a %s volume", ref.Name, csi.DriverName)
		}
		return &csipb.VolumeContentSource{Type: &csipb.VolumeContentSource_Volume{Volume: &csipb.VolumeContentSource_VolumeSource{VolumeId: pv.Spec.CSI.VolumeHandle}}}, nil
	case group == "snapshot.storage.k8s.io" && ref.Kind == "VolumeSnapshot":
		snap, err := p.snapshots.SnapshotV1().VolumeSnapshots(claim.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("source VolumeSnapshot %s: %w", ref.Name, err)
		}
		if snap.Status == nil || snap.Status.BoundVolumeSnapshotContentName == nil || snap.Status.ReadyToUse == nil || !*snap.Status.ReadyToUse {
			return nil, fmt.Errorf("source VolumeSnapshot %s is not ready to use yet", ref.Name)
		}
		content, err := p.snapshots.SnapshotV1().VolumeSnapshotContents().Get(ctx, *snap.Status.BoundVolumeSnapshotContentName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("VolumeSnapshotContent of %s: %w", ref.Name, err)
		}
		if content.Spec.Driver != csi.DriverName || content.Status == nil || content.Status.SnapshotHandle == nil {
			return nil, fmt.Errorf("VolumeSnapshot %s is not a %s snapshot", ref.Name, csi.DriverName)
		}
		return &csipb.VolumeContentSource{Type: &csipb.VolumeContentSource_Snapshot{Snapshot: &csipb.VolumeContentSource_SnapshotSource{SnapshotId: *content.Status.SnapshotHandle}}}, nil
	}
	return nil, fmt.Errorf("dataSource %s %s is not supported: use a PersistentVolumeClaim or a snapshot.storage.k8s.io VolumeSnapshot", strings.TrimPrefix(group+"/"+ref.Kind, "/"), ref.Name)
}

func (p *provisioner) Delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != csi.DriverName {
		return &provisionlib.IgnoredError{Reason: "not a " + csi.DriverName + " volume"}
	}
	if _, err := p.service.DeleteVolume(ctx, &csipb.DeleteVolumeRequest{VolumeId: pv.Spec.CSI.VolumeHandle}); err != nil {
		return fmt.Errorf("%s", status.Convert(err).Message())
	}
	return nil
}
