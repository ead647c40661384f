// Package api holds the custom resources through which the CSI controller
// and each node's CSI half meet: Volume, Snapshot and Pool, all
// cluster-scoped in group csi.vcluster-standalone.io/v1alpha1.
package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const (
	Group   = "csi.vcluster-standalone.io"
	Version = "v1alpha1"
)

var (
	GroupVersion     = schema.GroupVersion{Group: Group, Version: Version}
	VolumeResource   = GroupVersion.WithResource("volumes")
	SnapshotResource = GroupVersion.WithResource("snapshots")
	PoolResource     = GroupVersion.WithResource("pools")
)

// AccessType says how a volume is presented to the pod.
type AccessType string

const (
	AccessMount AccessType = "Mount"
	AccessBlock AccessType = "Block"
)

// SourceKind says what a new volume is filled from.
type SourceKind string

const (
	SourceSnapshot SourceKind = "Snapshot"
	SourceVolume   SourceKind = "Volume"
)

// VolumePhase is the node's report on a volume.
type VolumePhase string

const (
	VolumePending VolumePhase = "Pending"
	VolumeReady   VolumePhase = "Ready"
	VolumeFailed  VolumePhase = "Failed"
)

// Reasons a node gives in status.reason.
const (
	ReasonOutOfSpace     = "OutOfSpace"
	ReasonSourceNotFound = "SourceNotFound"
)

// Pool backends.
const (
	BackendBtrfs    = "btrfs"
	BackendLoopExt4 = "loop-ext4"
)

// Volume is one CSI volume; its name is the CSI volume id.
type Volume struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              VolumeSpec   `json:"spec"`
	Status            VolumeStatus `json:"status,omitempty"`
}

type VolumeSpec struct {
	// Node holds the volume's data.
	Node string `json:"node"`
	// CapacityBytes is the requested limit.
	CapacityBytes int64      `json:"capacityBytes"`
	AccessType    AccessType `json:"accessType"`
	// Source, when set, is the snapshot or volume (same node) the volume is filled from.
	Source *VolumeSource `json:"source,omitempty"`
	// Ephemeral marks a volume that lives as long as one pod.
	Ephemeral bool `json:"ephemeral,omitempty"`
}

type VolumeSource struct {
	Kind SourceKind `json:"kind"`
	Name string     `json:"name"`
}

// VolumeStatus is written by the volume's node only.
type VolumeStatus struct {
	Phase VolumePhase `json:"phase,omitempty"`
	// CapacityBytes is the limit in force.
	CapacityBytes      int64  `json:"capacityBytes,omitempty"`
	UsedBytes          int64  `json:"usedBytes,omitempty"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
}

type VolumeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Volume `json:"items"`
}

// Snapshot is one CSI snapshot; its name is the CSI snapshot id.
type Snapshot struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SnapshotSpec   `json:"spec"`
	Status            SnapshotStatus `json:"status,omitempty"`
}

type SnapshotSpec struct {
	Node         string `json:"node"`
	SourceVolume string `json:"sourceVolume"`
}

// SnapshotStatus is written by the snapshot's node only.
type SnapshotStatus struct {
	ReadyToUse bool  `json:"readyToUse,omitempty"`
	SizeBytes  int64 `json:"sizeBytes,omitempty"`
	// CreationTime is RFC3339.
	CreationTime string `json:"creationTime,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Message      string `json:"message,omitempty"`
}

type SnapshotList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Snapshot `json:"items"`
}

// Pool is one node's storage pool; its name is the node name and only that
// node writes it.
type Pool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            PoolStatus `json:"status,omitempty"`
}

type PoolStatus struct {
	Backend            string `json:"backend,omitempty"`
	TotalBytes         int64  `json:"totalBytes,omitempty"`
	FreeBytes          int64  `json:"freeBytes,omitempty"`
	MaxVolumeSizeBytes int64  `json:"maxVolumeSizeBytes,omitempty"`
	Volumes            int    `json:"volumes,omitempty"`
	// UpdateTime is RFC3339.
	UpdateTime string `json:"updateTime,omitempty"`
}

type PoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pool `json:"items"`
}

var (
	_ runtime.Object = &Volume{}
	_ runtime.Object = &Snapshot{}
	_ runtime.Object = &Pool{}
)
