package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/node/images"
)

func executeImages(args ...string) (string, error) {
	cmd := newImagesCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestImagesCommandsHaveHelpAndExample(t *testing.T) {
	cmd := newImagesCommand()
	for _, c := range append(cmd.Commands(), cmd) {
		if c.Short == "" || c.Example == "" {
			t.Errorf("%s: needs Short and Example", c.CommandPath())
		}
	}
	for _, args := range [][]string{{"import", "--help"}, {"list", "--help"}} {
		out, err := executeImages(args...)
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--address") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}

func TestImagesWithoutNodeAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	archive := filepath.Join(t.TempDir(), "a.tar")
	for _, args := range [][]string{{"list", "--address", sock}, {"import", "-", "--address", sock}} {
		_, err := executeImages(args...)
		want := "cannot reach containerd at " + sock + ": is node-agent running?"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: error = %v, want %q", args, err, want)
		}
	}
	// A missing file is reported before containerd is contacted.
	_, err := executeImages("import", archive, "--address", sock)
	if err == nil || !strings.HasPrefix(err.Error(), "failed to import "+archive+": open ") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := executeImages("import"); err == nil || !strings.Contains(err.Error(), "accepts 1 arg") {
		t.Errorf("no file: %v", err)
	}
}

func TestPrintImages(t *testing.T) {
	var out bytes.Buffer
	d := digest.FromString("x")
	err := printImages(&out, []images.Image{
		{Name: "registry.k8s.io/pause:3.10.1", Digest: d, Size: 742400, Pinned: true},
		{Name: "example.test/app:1", Digest: d, Size: 15946752},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "IMAGE                         DIGEST        SIZE    PINNED\n" +
		"registry.k8s.io/pause:3.10.1  " + d.Encoded()[:12] + "  742kB   yes\n" +
		"example.test/app:1            " + d.Encoded()[:12] + "  15.9MB  no\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}
