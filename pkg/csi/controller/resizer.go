package controller

import (
	"context"
	"fmt"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	volumeutil "k8s.io/kubernetes/pkg/volume/util"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
)

// resizer does what external-resizer does for our volumes: a bound PVC
// asking for more than its PV holds gets ControllerExpandVolume, then the
// PV's new size, then either NodeResizePending (the kubelet finishes) or
// the resize marked done.
type resizer struct {
	service  *Service
	client   kubernetes.Interface
	pvs      corelisters.PersistentVolumeLister
	recorder record.EventRecorder
}

// wants reports whether claim asks our driver for a larger volume.
func (r *resizer) wants(claim *corev1.PersistentVolumeClaim) (*corev1.PersistentVolume, resource.Quantity, bool) {
	want := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if claim.Status.Phase != corev1.ClaimBound || claim.Spec.VolumeName == "" {
		return nil, want, false
	}
	pv, err := r.pvs.Get(claim.Spec.VolumeName)
	if err != nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != csi.DriverName {
		return nil, want, false
	}
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	status := claim.Status.Capacity[corev1.ResourceStorage]
	return pv, want, want.Cmp(have) > 0 || (want.Cmp(status) > 0 && have.Cmp(status) > 0 && !nodeResizePending(claim))
}

func nodeResizePending(claim *corev1.PersistentVolumeClaim) bool {
	return claim.Status.AllocatedResourceStatuses[corev1.ResourceStorage] == corev1.PersistentVolumeClaimNodeResizePending ||
		claim.Status.AllocatedResourceStatuses[corev1.ResourceStorage] == corev1.PersistentVolumeClaimNodeResizeInProgress
}

func (r *resizer) resize(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	pv, want, ok := r.wants(claim)
	if !ok {
		return nil
	}
	claim, err := volumeutil.MarkControllerReisizeInProgress(claim, csi.DriverName, want, r.client)
	if err != nil {
		return fmt.Errorf("mark PVC %s/%s resizing: %w", claim.Namespace, claim.Name, err)
	}
	resp, err := r.service.ControllerExpandVolume(ctx, &csipb.ControllerExpandVolumeRequest{
		VolumeId: pv.Spec.CSI.VolumeHandle, CapacityRange: &csipb.CapacityRange{RequiredBytes: want.Value()},
	})
	if err != nil {
		msg := status.Convert(err).Message()
		r.recorder.Event(claim, corev1.EventTypeWarning, "VolumeResizeFailed", msg)
		return fmt.Errorf("expand %s: %s", pv.Name, msg)
	}
	newSize := *resource.NewQuantity(resp.GetCapacityBytes(), resource.BinarySI)
	if newSize.Cmp(want) < 0 {
		newSize = want
	}
	if have := pv.Spec.Capacity[corev1.ResourceStorage]; newSize.Cmp(have) > 0 {
		if _, err := volumeutil.UpdatePVSize(pv, newSize, r.client); err != nil {
			return fmt.Errorf("update PV %s size: %w", pv.Name, err)
		}
	}
	if resp.GetNodeExpansionRequired() {
		_, err = volumeutil.MarkForFSResize(claim, r.client)
	} else {
		_, err = volumeutil.MarkResizeFinished(claim, newSize, r.client)
	}
	if err != nil {
		return fmt.Errorf("update PVC %s/%s resize status: %w", claim.Namespace, claim.Name, err)
	}
	r.recorder.Eventf(claim, corev1.EventTypeNormal, "VolumeResizeSuccessful", "volume %s grown to %s", pv.Spec.CSI.VolumeHandle, newSize.String())
	klog.InfoS("Expanded volume", "pvc", klog.KObj(claim), "size", newSize.String(), "nodeExpansion", resp.GetNodeExpansionRequired())
	return nil
}

// claimKey names a PVC in a work queue.
func claimKey(claim *corev1.PersistentVolumeClaim) string { return claim.Namespace + "/" + claim.Name }
