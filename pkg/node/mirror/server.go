// Package mirror is the node's registry mirror: every node serves the images
// in its containerd content store, read-only, to the cluster's other nodes
// (the OCI distribution API's pull half over mutual TLS, node certificates
// only), and points its containerd at its peers for every registry. An image
// imported on one node can so be pulled on all of them, offline.
package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageGetter finds an image by its full name (registry/repository:tag);
// containerd's images.Store is one.
type ImageGetter interface {
	Get(ctx context.Context, name string) (images.Image, error)
}

// Handler serves GET and HEAD of /v2/, manifests (by tag or digest) and
// blobs from a content store. Requests for a registry other than the one in
// the repository name carry it in the `ns` query parameter, as containerd
// sends it to mirrors.
type Handler struct {
	Content content.Provider
	Info    content.InfoProvider
	Images  ImageGetter
	// Served is told of every manifest served (for the node's log); may be nil.
	Served func(client, ref string, desc ocispec.Descriptor)
}

// registryError is the distribution API's error body.
func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this mirror is read-only: only GET and HEAD")
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return
	}
	name, kind, ref, ok := splitPath(r.URL.Path)
	if !ok {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "not a manifest or blob path: "+r.URL.Path)
		return
	}
	repo, err := repository(r.URL.Query().Get("ns"), name)
	if err != nil {
		registryError(w, http.StatusBadRequest, "NAME_INVALID", err.Error())
		return
	}
	ctx := r.Context()
	switch kind {
	case "manifests":
		h.serveManifest(ctx, w, r, repo, ref)
	case "blobs":
		dgst, err := digest.Parse(ref)
		if err != nil {
			registryError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
			return
		}
		h.serveContent(ctx, w, r, ocispec.Descriptor{Digest: dgst, MediaType: "application/octet-stream"}, "BLOB_UNKNOWN")
	}
}

// splitPath takes /v2/<name>/(manifests|blobs)/<ref> apart.
func splitPath(p string) (name, kind, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", "", false
	}
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); i > 0 && i+len(k) < len(rest) {
			return rest[:i], strings.Trim(k, "/"), rest[i+len(k):], true
		}
	}
	return "", "", "", false
}

// repository is the full repository name containerd stores images under:
// ns/name for a mirrored registry, else name normalised (docker.io/library/…).
func repository(ns, name string) (string, error) {
	full := name
	if ns != "" {
		if ns == "docker.io" && !strings.Contains(name, "/") {
			name = "library/" + name
		}
		full = ns + "/" + name
	}
	named, err := reference.ParseNormalizedNamed(full)
	if err != nil {
		return "", fmt.Errorf("invalid repository %q: %v", full, err)
	}
	return named.Name(), nil
}

func (h *Handler) serveManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, repo, ref string) {
	var desc ocispec.Descriptor
	dgst, err := digest.Parse(ref)
	byTag := err != nil
	if !byTag {
		desc = ocispec.Descriptor{Digest: dgst}
	} else {
		img, err := h.Images.Get(ctx, repo+":"+ref)
		if err != nil {
			if errdefs.IsNotFound(err) {
				registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", repo+":"+ref+" is not on this node")
			} else {
				registryError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
			}
			return
		}
		desc = img.Target
	}
	if desc.MediaType == "" {
		mt, err := h.manifestMediaType(ctx, desc.Digest)
		if err != nil {
			h.contentError(w, err, "MANIFEST_UNKNOWN", desc.Digest)
			return
		}
		desc.MediaType = mt
	}
	// containerd resolves a tag with HEAD, then fetches by digest with GET.
	if h.Served != nil && (byTag || r.Method == http.MethodGet) {
		sep := ":"
		if !byTag {
			sep = "@"
		}
		h.Served(clientName(r), repo+sep+ref, desc)
	}
	h.serveContent(ctx, w, r, desc, "MANIFEST_UNKNOWN")
}

// manifestMediaType reads a manifest or index by digest to learn its type:
// its own mediaType field, else what its shape says.
func (h *Handler) manifestMediaType(ctx context.Context, dgst digest.Digest) (string, error) {
	info, err := h.Info.Info(ctx, dgst)
	if err != nil {
		return "", err
	}
	const maxManifest = 4 << 20
	if info.Size > maxManifest {
		return "", fmt.Errorf("%s is %d bytes: too large for a manifest", dgst, info.Size)
	}
	body, err := content.ReadBlob(ctx, h.Content, ocispec.Descriptor{Digest: dgst, Size: info.Size})
	if err != nil {
		return "", err
	}
	var m struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Layers    json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("%s is not a manifest: %v", dgst, err)
	}
	switch {
	case m.MediaType != "":
		return m.MediaType, nil
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case m.Layers != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", fmt.Errorf("%s is neither a manifest nor an index", dgst)
}

func (h *Handler) serveContent(ctx context.Context, w http.ResponseWriter, r *http.Request, desc ocispec.Descriptor, unknownCode string) {
	info, err := h.Info.Info(ctx, desc.Digest)
	if err != nil {
		h.contentError(w, err, unknownCode, desc.Digest)
		return
	}
	desc.Size = info.Size
	ra, err := h.Content.ReaderAt(ctx, desc)
	if err != nil {
		h.contentError(w, err, unknownCode, desc.Digest)
		return
	}
	defer ra.Close()
	w.Header().Set("Content-Type", desc.MediaType)
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	w.Header().Set("ETag", `"`+desc.Digest.String()+`"`)
	// ServeContent answers HEAD and Range requests (resumed pulls) itself.
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(ra, 0, info.Size))
}

func (h *Handler) contentError(w http.ResponseWriter, err error, code string, dgst digest.Digest) {
	if errdefs.IsNotFound(err) {
		registryError(w, http.StatusNotFound, code, dgst.String()+" is not on this node")
		return
	}
	registryError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
}

// clientName is the verified client certificate's common name, if any.
func clientName(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "unauthenticated"
	}
	return r.TLS.PeerCertificates[0].Subject.CommonName
}
