//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// hostSnapshot is what the host has that a lab could leave behind.
type hostSnapshot struct {
	netns   []string // /run/netns entries
	links   []string // interfaces of the host's own namespace
	mounts  []string // mount points of the host's mount namespace
	loops   []string // loop devices with a backing file
	cgroups []string // cgroup directories named vcslab (the lab's subtree), any hierarchy
	labProc []string // "pid starttime" of processes in a lab cgroup
}

func takeSnapshot() (*hostSnapshot, error) {
	s := &hostSnapshot{}
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			s.netns = append(s.netns, e.Name())
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, i := range ifaces {
		s.links = append(s.links, i.Name)
	}
	if s.mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		s.loops = append(s.loops, filepath.Base(filepath.Dir(filepath.Dir(f)))+" "+strings.TrimSpace(string(b)))
	}
	s.cgroups = labCgroups()
	s.labProc = labProcesses()
	for _, l := range [][]string{s.netns, s.links, s.mounts, s.loops, s.cgroups, s.labProc} {
		sort.Strings(l)
	}
	return s, nil
}

func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, fields[4])
		}
	}
	return out, sc.Err()
}

// labCgroups finds directories named vcslab in every cgroup hierarchy.
func labCgroups() []string {
	var out []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Count(p, "/") > 8 {
			return fs.SkipDir
		}
		if d.Name() == "vcslab" {
			out = append(out, p)
			return fs.SkipDir
		}
		return nil
	})
	return out
}

// labProcesses lists processes whose cgroup lies in the lab's subtree.
func labProcesses() []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cg, err := os.ReadFile(d + "/cgroup")
		if err != nil || !strings.Contains(string(cg), "/vcslab/") {
			continue
		}
		out = append(out, procID(filepath.Base(d)))
	}
	return out
}

// procID is "PID STARTTIME": a PID reused by another process does not match.
func procID(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return pid + " gone"
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(fields) < 20 {
		return pid + " ?"
	}
	return pid + " " + fields[19]
}

func alive(id string) bool {
	pid, _, _ := strings.Cut(id, " ")
	return procID(pid) == id
}

// added returns what is in after but not in before.
func added(before, after []string) []string {
	seen := map[string]bool{}
	for _, b := range before {
		seen[b] = true
	}
	var out []string
	for _, a := range after {
		if !seen[a] {
			out = append(out, a)
		}
	}
	return out
}

func (s *hostSnapshot) String() string {
	return fmt.Sprintf("%d netns, %d links, %d mounts, %d loop devices, %d lab cgroups, %d lab processes",
		len(s.netns), len(s.links), len(s.mounts), len(s.loops), len(s.cgroups), len(s.labProc))
}
