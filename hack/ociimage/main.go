// Command ociimage writes an OCI image-layout tar from files on the build
// machine: one layer per -tree (a whole directory tree such as a Debian
// rootfs, shared by images that name the same tree), then one layer with the
// -file/-link/-dir entries. The Makefile builds the system images (pause,
// CoreDNS), the e2e busybox image and the conformance images with it. The
// output is deterministic: the same inputs always give the same digests.
//
//	ociimage -o bin/images/pause.tar -name registry.k8s.io/pause:3.10.1 \
//	  -file bin/images/pause:/pause -entrypoint '["/pause"]'
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "ociimage: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	var trees, files, links, dirs, env, expose listFlag
	out := fs.String("o", "", "output archive (written atomically)")
	name := fs.String("name", "", "full image reference, e.g. registry.k8s.io/pause:3.10.1")
	arch := fs.String("arch", defaultArch(), "image architecture (GOARCH)")
	entrypoint := fs.String("entrypoint", "", `entrypoint as a JSON array, e.g. ["/pause"]`)
	cmd := fs.String("cmd", "", `default arguments as a JSON array, e.g. ["sh"]`)
	user := fs.String("user", "", "user (and group) the process runs as")
	workdir := fs.String("workdir", "", "working directory")
	fs.Var(&trees, "tree", "DIR whose whole tree is one layer, below the -file layer; repeatable, lowest first")
	fs.Var(&files, "file", "SRC:DEST[:MODE] regular file to add (MODE in octal); repeatable")
	fs.Var(&links, "link", "DEST=TARGET symlink to add; repeatable")
	fs.Var(&dirs, "dir", "empty directory to add; repeatable")
	fs.Var(&env, "env", "KEY=VALUE environment variable; repeatable")
	fs.Var(&expose, "expose", "exposed port, e.g. 53/udp; repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("-o is required")
	}
	spec := Spec{Name: *name, Arch: *arch, Trees: trees, Dirs: dirs}
	spec.Config.Env = env
	spec.Config.User = *user
	spec.Config.WorkingDir = *workdir
	for _, a := range []struct {
		flag string
		val  string
		dst  *[]string
	}{{"entrypoint", *entrypoint, &spec.Config.Entrypoint}, {"cmd", *cmd, &spec.Config.Cmd}} {
		if a.val == "" {
			continue
		}
		if err := json.Unmarshal([]byte(a.val), a.dst); err != nil {
			return fmt.Errorf("-%s %q: want a JSON array of strings: %w", a.flag, a.val, err)
		}
	}
	if len(expose) > 0 {
		spec.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range expose {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			spec.Config.ExposedPorts[p] = struct{}{}
		}
	}
	for _, f := range files {
		parts := strings.Split(f, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return fmt.Errorf("-file %q: want SRC:DEST[:MODE]", f)
		}
		file := File{Src: parts[0], Dest: parts[1]}
		if len(parts) == 3 {
			m, err := strconv.ParseUint(parts[2], 8, 32)
			if err != nil {
				return fmt.Errorf("-file %q: mode must be octal: %w", f, err)
			}
			file.Mode = os.FileMode(m)
		}
		spec.Files = append(spec.Files, file)
	}
	for _, l := range links {
		dest, target, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("-link %q: want DEST=TARGET", l)
		}
		spec.Symlinks = append(spec.Symlinks, Symlink{Dest: dest, Target: target})
	}

	tmp, err := os.CreateTemp(filepath.Dir(*out), ".ociimage-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	res, err := Write(tmp, spec)
	if err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	fmt.Printf("%s %s %s\n", *out, spec.Name, res.Manifest)
	return nil
}

func defaultArch() string {
	if a := os.Getenv("GOARCH"); a != "" {
		return a
	}
	return runtime.GOARCH
}
