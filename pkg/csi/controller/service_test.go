package controller

import (
	"strings"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
)

func capability(mode csipb.VolumeCapability_AccessMode_Mode, block bool) *csipb.VolumeCapability {
	c := &csipb.VolumeCapability{AccessMode: &csipb.VolumeCapability_AccessMode{Mode: mode}}
	if block {
		c.AccessType = &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}}
	}
	return c
}

func TestCheckCapabilities(t *testing.T) {
	rwo := csipb.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	for _, tc := range []struct {
		name string
		caps []*csipb.VolumeCapability
		want api.AccessType
		code codes.Code
	}{
		{"mount", []*csipb.VolumeCapability{capability(rwo, false)}, api.AccessMount, codes.OK},
		{"block", []*csipb.VolumeCapability{capability(rwo, true)}, api.AccessBlock, codes.OK},
		{"none", nil, "", codes.InvalidArgument},
		{"multi-node", []*csipb.VolumeCapability{capability(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, false)}, "", codes.InvalidArgument},
		{"mount and block", []*csipb.VolumeCapability{capability(rwo, false), capability(rwo, true)}, "", codes.InvalidArgument},
		{"no access type", []*csipb.VolumeCapability{{AccessMode: &csipb.VolumeCapability_AccessMode{Mode: rwo}}}, "", codes.InvalidArgument},
	} {
		got, err := checkCapabilities(tc.caps)
		if status.Code(err) != tc.code || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.code)
		}
	}
	_, err := checkCapabilities([]*csipb.VolumeCapability{capability(csipb.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, false)})
	if !strings.Contains(err.Error(), "ReadWriteOnce") {
		t.Errorf("refusal of a multi-node mode does not say what is offered: %v", err)
	}
}

func TestRequestedSize(t *testing.T) {
	for _, tc := range []struct {
		required, limit, want int64
		code                  codes.Code
	}{
		{0, 0, DefaultVolumeSize, codes.OK},
		{5 << 20, 0, 5 << 20, codes.OK},
		{0, 10 << 20, 10 << 20, codes.OK},
		{0, 10 << 30, DefaultVolumeSize, codes.OK},
		{20, 10, 0, codes.OutOfRange},
		{-1, 0, 0, codes.InvalidArgument},
	} {
		got, err := requestedSize(&csipb.CapacityRange{RequiredBytes: tc.required, LimitBytes: tc.limit})
		if status.Code(err) != tc.code || got != tc.want {
			t.Errorf("required %d limit %d: got %d, %v; want %d, %v", tc.required, tc.limit, got, err, tc.want, tc.code)
		}
	}
}

func TestPage(t *testing.T) {
	items := []int{0, 1, 2, 3, 4}
	got, next, err := page(items, "", 2)
	if err != nil || len(got) != 2 || next != "2" {
		t.Fatalf("first page: %v %q %v", got, next, err)
	}
	got, next, err = page(items, next, 2)
	if err != nil || got[0] != 2 || next != "4" {
		t.Fatalf("second page: %v %q %v", got, next, err)
	}
	got, next, err = page(items, next, 2)
	if err != nil || len(got) != 1 || next != "" {
		t.Fatalf("last page: %v %q %v", got, next, err)
	}
	if _, _, err := page(items, "not-a-token", 0); status.Code(err) != codes.Aborted {
		t.Errorf("bad token: %v, want Aborted", err)
	}
}

func TestObjectIDIsAValidStableName(t *testing.T) {
	if got := objectID("vol", "pvc-0b5e"); got != "pvc-0b5e" {
		t.Errorf("a valid name changed: %s", got)
	}
	odd := "sanity-Controller Service-CreateVolume-1A2B"
	a, b := objectID("vol", odd), objectID("vol", odd)
	if a != b || len(validation.IsDNS1123Subdomain(a)) != 0 || !strings.HasPrefix(a, "vol-") {
		t.Errorf("objectID(%q) = %q, %q: want one valid, stable name", odd, a, b)
	}
	if objectID("vol", odd+"x") == a {
		t.Error("two names map to one id")
	}
}
