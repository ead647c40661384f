package controller

import (
	"context"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	snapshotscheme "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/scheme"
	snapshotinformers "github.com/kubernetes-csi/external-snapshotter/client/v8/informers/externalversions"
	commoncontroller "github.com/kubernetes-csi/external-snapshotter/v8/pkg/common-controller"
	snapshotmetrics "github.com/kubernetes-csi/external-snapshotter/v8/pkg/metrics"
	sidecarcontroller "github.com/kubernetes-csi/external-snapshotter/v8/pkg/sidecar-controller"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
)

// snapshotter is external-snapshotter's CSI client, answered in-process.
type snapshotter struct{ service *Service }

func (s snapshotter) CreateSnapshot(ctx context.Context, name, volumeHandle string, parameters, _ map[string]string) (string, string, time.Time, int64, bool, error) {
	resp, err := s.service.CreateSnapshot(ctx, &csipb.CreateSnapshotRequest{Name: name, SourceVolumeId: volumeHandle, Parameters: parameters})
	if err != nil {
		return "", "", time.Time{}, 0, false, err
	}
	sn := resp.GetSnapshot()
	return csi.DriverName, sn.GetSnapshotId(), sn.GetCreationTime().AsTime(), sn.GetSizeBytes(), sn.GetReadyToUse(), nil
}

func (s snapshotter) DeleteSnapshot(ctx context.Context, id string, _ map[string]string) error {
	_, err := s.service.DeleteSnapshot(ctx, &csipb.DeleteSnapshotRequest{SnapshotId: id})
	return err
}

func (s snapshotter) GetSnapshotStatus(ctx context.Context, id string, _ map[string]string) (bool, time.Time, int64, string, error) {
	resp, err := s.service.ListSnapshots(ctx, &csipb.ListSnapshotsRequest{SnapshotId: id})
	if err != nil {
		return false, time.Time{}, 0, "", err
	}
	if len(resp.GetEntries()) == 0 {
		return false, time.Time{}, 0, "", status.Errorf(codes.NotFound, "snapshot %s not found", id)
	}
	sn := resp.GetEntries()[0].GetSnapshot()
	return sn.GetReadyToUse(), sn.GetCreationTime().AsTime(), sn.GetSizeBytes(), "", nil
}

// runSnapshotControllers runs external-snapshotter's common controller
// (VolumeSnapshot <-> VolumeSnapshotContent) and its sidecar controller
// (content -> CSI) in-process until ctx ends.
func runSnapshotControllers(ctx context.Context, client kubernetes.Interface, snapshots snapshotclient.Interface, service *Service, wg *sync.WaitGroup) {
	const resync = 15 * time.Minute
	// The controllers' event recorders write about VolumeSnapshots.
	utilruntime.Must(snapshotscheme.AddToScheme(scheme.Scheme))
	factory := snapshotinformers.NewSharedInformerFactory(snapshots, resync)
	coreFactory := informers.NewSharedInformerFactory(client, resync)
	v1 := factory.Snapshot().V1()
	common := commoncontroller.NewCSISnapshotCommonController(snapshots, client,
		v1.VolumeSnapshots(), v1.VolumeSnapshotContents(), v1.VolumeSnapshotClasses(),
		nil, nil, nil,
		coreFactory.Core().V1().PersistentVolumeClaims(), coreFactory.Core().V1().PersistentVolumes(), coreFactory.Core().V1().Nodes(),
		snapshotmetrics.NewMetricsManager(), resync,
		workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.DefaultTypedControllerRateLimiter[string](),
		false, true, false)
	sidecar := sidecarcontroller.NewCSISnapshotSideCarController(snapshots, client, csi.DriverName,
		v1.VolumeSnapshotContents(), v1.VolumeSnapshotClasses(), snapshotter{service: service}, nil,
		time.Minute, resync, "snapshot", -1, "groupsnapshot", -1, false,
		workqueue.DefaultTypedControllerRateLimiter[string](), false, nil, nil, workqueue.DefaultTypedControllerRateLimiter[string]())
	factory.Start(ctx.Done())
	coreFactory.Start(ctx.Done())
	wg.Add(2)
	go func() { defer wg.Done(); common.Run(2, ctx.Done(), wg) }()
	go func() { defer wg.Done(); sidecar.Run(2, ctx.Done(), wg) }()
}
