package controller

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed snapshotcrds
var snapshotCRDFiles embed.FS

// SnapshotCRDs returns external-snapshotter's VolumeSnapshot* CRDs, which
// the build embeds (see snapshotcrds/README.md).
func SnapshotCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := fs.ReadDir(snapshotCRDFiles, "snapshotcrds")
	if err != nil {
		return nil, err
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := snapshotCRDFiles.ReadFile("snapshotcrds/" + e.Name())
		if err != nil {
			return nil, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			return nil, fmt.Errorf("embedded snapshot CRD %s: %w", e.Name(), err)
		}
		crds = append(crds, crd)
	}
	if len(crds) != 3 {
		return nil, fmt.Errorf("this build embeds %d of the 3 snapshot CRDs: build with make, which copies them from external-snapshotter's client module", len(crds))
	}
	return crds, nil
}
