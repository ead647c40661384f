// Package images imports OCI and Docker image archives into node-agent's
// containerd, where the CRI plugin (and so kubelet) can use them, and lists
// what is there. The system images (pause, CoreDNS) are built by the Makefile
// and embedded in node-agent: nothing the cluster needs comes from a registry.
package images

import (
	"embed"
	"errors"
	"io/fs"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// embedded holds the system image archives `make system-images` copies into
// embedded/. Its committed README keeps the pattern matching without them.
//
//go:embed embedded
var embedded embed.FS

// ErrNoSystemImages is what System returns from a binary built without make.
var ErrNoSystemImages = errors.New("node-agent was built without system images; build it with make")

// Archive is an image archive embedded in node-agent.
type Archive struct {
	Name string // the image reference it holds, e.g. config.PauseImage
	File string // its file name, e.g. pause.tar
	Data []byte // the OCI image-layout tar
}

// systemArchives names the archive of every system image.
var systemArchives = []struct{ file, name string }{
	{"pause.tar", config.PauseImage},
	{"coredns.tar", config.CoreDNSImage},
}

// System returns the embedded system image archives, or ErrNoSystemImages
// when the binary was built without (some of) them.
func System() ([]Archive, error) {
	return systemFrom(embedded)
}

func systemFrom(fsys fs.FS) ([]Archive, error) {
	var out []Archive
	for _, s := range systemArchives {
		data, err := fs.ReadFile(fsys, "embedded/"+s.file)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && len(data) == 0) {
			return nil, ErrNoSystemImages
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Archive{Name: s.name, File: s.file, Data: data})
	}
	return out, nil
}
