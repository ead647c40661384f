# ---- conformance images (owned by test/conformance/images) -------------------
# `make conformance-images` builds, offline and from sources, every container
# image the upstream [Conformance] specs of e2e.test v1.36.3 run, one OCI
# archive per image in $(CIMG)/*.tar, named exactly as e2e.test asks for them
# (names.sh reads test/utils/image/manifest.go of the k8s.io/kubernetes module
# in go.mod), and $(CIMG)/list with one archive path per line, for
# `node-agent images import`. Incremental: a second run rebuilds nothing.
# `make conformance-images-check` unpacks every archive and runs its tools
# with chroot (check.sh); it needs root, as does the first build (debootstrap).
#
# Go programs (agnhost, nonewprivs, sample-apiserver, etcd) come from the
# module in this directory; the glibc userland agnhost, glibc-dns-testing,
# nginx, kitten and nautilus share is one Debian bookworm rootfs layer
# (rootfs.sh, cached in $(CIMG_ROOTFS_CACHE), keyed by its package list and
# CIMG_ROOTFS_VERSION: bump that when rootfs.sh changes); busybox is
# upstream BusyBox 1.37.0 built from source (busybox/build.sh): Debian's
# busybox drops environment variables whose names are not shell identifiers
# (data-1), which the ConfigMap/Secret env specs print, and no other shell
# gives the "can't create" message the read-only rootfs spec expects.
# Left out of agnhost: the coredns binary and fake registry its Dockerfile
# downloads (no conformance spec runs them); nginx:latest, which two
# admission-policy specs name in objects they never wait to run, is not built.
CIMG := $(BIN)/conformance-images
CIMG_BUILD := $(CIMG)/build
CIMG_SRC := test/conformance/images
CIMG_MOD := $(CIMG_SRC)/go.mod $(CIMG_SRC)/go.sum
CIMG_ROOTFS_PACKAGES := bash ca-certificates curl dnsutils iperf iproute2 iputils-ping netcat-openbsd nginx-light procps
CIMG_ROOTFS_VERSION := 1
CIMG_ROOTFS_CACHE ?= /var/cache/vcluster-standalone-lab
CIMG_ROOTFS := $(CIMG_ROOTFS_CACHE)/conformance-rootfs-$(shell echo '$(CIMG_ROOTFS_PACKAGES) $(CIMG_ROOTFS_VERSION)' | sha256sum | cut -c1-12)
CIMG_PATH := PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CIMG_NAMES := $(CIMG_BUILD)/names
# The reference e2e.test uses for image ID $(1) (an imageutils constant).
cimg_name = $(shell awk '$$1 == "$(1)" { print $$2 }' $(CIMG_NAMES))
# Kubernetes programs report KUBE_VERSION; no build date, so rebuilds match.
CIMG_LDFLAGS := -s -w $(foreach p,$(VERSION_PKGS),-X $(p).gitVersion=$(KUBE_VERSION) \
	-X $(p).gitMajor=$(KUBE_MAJOR) -X $(p).gitMinor=$(KUBE_MINOR) -X $(p).gitTreeState=clean)
CIMG_GOBUILD := cd $(CIMG_SRC) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(CIMG_LDFLAGS)'
CIMG_OCI := $(IMAGES)/ociimage

CIMG_ARCHIVES := $(addprefix $(CIMG)/,$(addsuffix .tar,\
	agnhost agnhost-prev busybox etcd glibc-dns-testing kitten nautilus nginx nonewprivs pause sample-apiserver))

.PHONY: conformance-images conformance-images-check

conformance-images: $(CIMG)/list

conformance-images-check: conformance-images
	$(CIMG_SRC)/check.sh $(CIMG)

$(CIMG)/list: $(CIMG_ARCHIVES)
	printf '%s\n' $^ >$@

$(CIMG_NAMES): $(CIMG_MOD) $(CIMG_SRC)/names.sh
	@mkdir -p $(@D)
	cd $(CIMG_SRC) && $(GO) mod download k8s.io/kubernetes && ./names.sh >$@.tmp
	mv $@.tmp $@

# Files the upstream Dockerfiles ADD, from test/images/ of the module.
CIMG_K8S_FILES := agnhost/porter/localhost.crt agnhost/porter/localhost.key \
	kitten/html/kitten.jpg kitten/html/data.json nautilus/html/nautilus.jpg nautilus/html/data.json
$(addprefix $(CIMG_BUILD)/src/,$(CIMG_K8S_FILES)) &: $(CIMG_MOD)
	@mkdir -p $(CIMG_BUILD)/src
	dir=$$(cd $(CIMG_SRC) && $(GO) list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images && \
	for f in $(CIMG_K8S_FILES); do mkdir -p $(CIMG_BUILD)/src/$$(dirname $$f) && cp $$dir/$$f $(CIMG_BUILD)/src/$$f; done

# ---- programs ----
$(CIMG_BUILD)/agnhost: $(CIMG_MOD)
	$(CIMG_GOBUILD) -o $@ k8s.io/kubernetes/test/images/agnhost
$(CIMG_BUILD)/nnp: $(CIMG_MOD)
	$(CIMG_GOBUILD) -o $@ k8s.io/kubernetes/test/images/nonewprivs
$(CIMG_BUILD)/sample-apiserver: $(CIMG_MOD)
	$(CIMG_GOBUILD) -o $@ k8s.io/sample-apiserver
$(CIMG_BUILD)/etcd: $(CIMG_MOD)
	cd $(CIMG_SRC) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ go.etcd.io/etcd/server/v3

$(CIMG_ROOTFS).complete: | deps
	$(CIMG_SRC)/rootfs.sh $(CIMG_ROOTFS) $(CIMG_ROOTFS_PACKAGES)

# ---- images ----
# agnhost as test/images/agnhost/Dockerfile lays it out, on the Debian rootfs
# (netcat-openbsd, curl, dig, getent, iproute2, iperf, bash: no busybox).
CIMG_AGNHOST_DEPS := $(CIMG_BUILD)/agnhost $(CIMG_ROOTFS).complete $(CIMG_NAMES) $(CIMG_OCI) \
	$(CIMG_BUILD)/src/agnhost/porter/localhost.crt $(CIMG_BUILD)/src/agnhost/porter/localhost.key \
	$(CIMG_SRC)/agnhost/os-release
# os-release: upstream's base is Alpine and the ImageVolume spec checks for it;
# the file says what this image really is and what it stands in for.
CIMG_AGNHOST_LAYERS = -tree $(CIMG_ROOTFS) -file $(CIMG_BUILD)/agnhost:/agnhost:0755 -link /agnhost-2=agnhost \
	-file $(CIMG_BUILD)/src/agnhost/porter/localhost.crt:/localhost.crt \
	-file $(CIMG_BUILD)/src/agnhost/porter/localhost.key:/localhost.key \
	-file $(CIMG_SRC)/agnhost/os-release:/etc/os-release \
	-dir /uploads -link /usr/local/bin/iperf=/usr/bin/iperf -env $(CIMG_PATH) \
	-expose 80 -expose 8080 -expose 8081 -expose 9376 -expose 5000 -entrypoint '["/agnhost"]'

$(CIMG)/agnhost.tar: $(CIMG_AGNHOST_DEPS)
	$(CIMG_OCI) -o $@ -name $(call cimg_name,Agnhost) $(CIMG_AGNHOST_LAYERS) -cmd '["pause"]'

# The spec's "previous" agnhost: the same build under e2e's older tag.
$(CIMG)/agnhost-prev.tar: $(CIMG_AGNHOST_DEPS)
	$(CIMG_OCI) -o $@ -name $(call cimg_name,AgnhostPrev) $(CIMG_AGNHOST_LAYERS) -cmd '["pause"]'

# kitten and nautilus: agnhost plus their html/ files, running test-webserver.
$(CIMG)/kitten.tar $(CIMG)/nautilus.tar: $(CIMG)/%.tar: $(CIMG_AGNHOST_DEPS) $(CIMG_BUILD)/src/%/html/data.json
	$(CIMG_OCI) -o $@ -name $(call cimg_name,$(if $(filter kitten,$*),Kitten,Nautilus)) $(CIMG_AGNHOST_LAYERS) \
		-file $(CIMG_BUILD)/src/$*/html/$*.jpg:/$*.jpg -file $(CIMG_BUILD)/src/$*/html/data.json:/data.json \
		-cmd '["test-webserver"]'

# glibc-dns-testing: Debian with dnsutils (dig), as its Dockerfile.
$(CIMG)/glibc-dns-testing.tar: $(CIMG_ROOTFS).complete $(CIMG_NAMES) $(CIMG_OCI)
	$(CIMG_OCI) -o $@ -name $(call cimg_name,GlibcDnsTesting) -tree $(CIMG_ROOTFS) -env $(CIMG_PATH) -cmd '["bash"]'

# nginx from Debian's nginx-light, in the foreground on port 80.
$(CIMG)/nginx.tar: $(CIMG_ROOTFS).complete $(CIMG_NAMES) $(CIMG_OCI) $(CIMG_SRC)/nginx/nginx.conf $(CIMG_SRC)/nginx/index.html
	$(CIMG_OCI) -o $@ -name $(call cimg_name,Nginx) -tree $(CIMG_ROOTFS) \
		-file $(CIMG_SRC)/nginx/nginx.conf:/etc/nginx/nginx.conf -file $(CIMG_SRC)/nginx/index.html:/usr/share/nginx/html/index.html \
		-link /var/log/nginx/access.log=/dev/stdout -link /var/log/nginx/error.log=/dev/stderr \
		-env $(CIMG_PATH) -expose 80 -cmd '["nginx","-g","daemon off;"]'

# busybox: upstream BusyBox 1.37.0 built from source (busybox/build.sh says
# why not Debian's), every applet a symlink in /bin, as the e2e image.
$(CIMG_BUILD)/busybox: $(CIMG_SRC)/busybox/build.sh | deps
	@mkdir -p $(@D)
	$(CIMG_SRC)/busybox/build.sh $@

$(CIMG)/busybox.tar: $(CIMG_BUILD)/busybox $(CIMG_NAMES) $(CIMG_OCI) \
		$(CIMG_SRC)/busybox/passwd $(CIMG_SRC)/busybox/group $(CIMG_SRC)/etc/hosts
	$(CIMG_OCI) -o $@ -name $(call cimg_name,BusyBox) -file $<:/bin/busybox:0755 \
		$$($< --list | grep -vx busybox | sed 's|.*|-link /bin/&=busybox|') \
		-file $(CIMG_SRC)/busybox/passwd:/etc/passwd -file $(CIMG_SRC)/busybox/group:/etc/group \
		-file $(CIMG_SRC)/etc/hosts:/etc/hosts \
		-dir /tmp -dir /root -dir /home -dir /var/www -dir /usr/bin -dir /usr/sbin -dir /sbin \
		-env $(CIMG_PATH) -cmd '["sh"]'

# pause: the repo's own pause, under the name e2e.test uses.
$(CIMG)/pause.tar: $(IMAGES)/pause $(CIMG_NAMES) $(CIMG_OCI)
	$(CIMG_OCI) -o $@ -name $(call cimg_name,Pause) -file $<:/pause:0755 -entrypoint '["/pause"]' -user 65535:65535

# nonewprivs: nnp setuid root, as its Dockerfile (chmod +s).
$(CIMG)/nonewprivs.tar: $(CIMG_BUILD)/nnp $(CIMG_NAMES) $(CIMG_OCI)
	$(CIMG_OCI) -o $@ -name $(call cimg_name,Nonewprivs) -file $<:/usr/local/bin/nnp:06755 -dir /tmp \
		-env $(CIMG_PATH) -cmd '["nnp"]'

# sample-apiserver (k8s.io/sample-apiserver) at /sample-apiserver; the spec
# gives only arguments.
$(CIMG)/sample-apiserver.tar: $(CIMG_BUILD)/sample-apiserver $(CIMG_NAMES) $(CIMG_OCI) $(CIMG_SRC)/etc/hosts
	$(CIMG_OCI) -o $@ -name $(call cimg_name,APIServer) -file $<:/sample-apiserver:0755 -dir /tmp \
		-file $(CIMG_SRC)/etc/hosts:/etc/hosts \
		-entrypoint '["/sample-apiserver"]'

# etcd at /usr/local/bin/etcd, the path the spec runs; /etc/hosts names
# localhost (its default peer URL) where no runtime provides one.
$(CIMG)/etcd.tar: $(CIMG_BUILD)/etcd $(CIMG_NAMES) $(CIMG_OCI) $(CIMG_SRC)/etc/hosts
	$(CIMG_OCI) -o $@ -name $(call cimg_name,Etcd) -file $<:/usr/local/bin/etcd:0755 -dir /tmp -dir /var/lib/etcd \
		-file $(CIMG_SRC)/etc/hosts:/etc/hosts \
		-env $(CIMG_PATH) -cmd '["/usr/local/bin/etcd"]'
# ---- end of conformance images ------------------------------------------------
