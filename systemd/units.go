// Package systemd embeds the distribution's systemd unit files so the binaries
// can print them and the installers write exactly what was built and tested.
package systemd

import (
	"embed"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.service
var units embed.FS

// Names returns the names of every embedded unit, sorted.
func Names() []string {
	entries, err := fs.ReadDir(units, ".")
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// Unit returns the text of the named unit. The ".service" suffix may be
// omitted: "node-agent" and "node-agent.service" name the same unit.
func Unit(name string) ([]byte, error) {
	file := name
	if !strings.Contains(file, ".") {
		file += ".service"
	}
	if strings.ContainsAny(file, "/\\") {
		return nil, fmt.Errorf("unknown unit %q: known units are %s", name, strings.Join(Names(), ", "))
	}
	b, err := units.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("unknown unit %q: known units are %s", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// Print writes the named unit to w, or the list of unit names when name is
// empty: what the binaries' `unit` commands show.
func Print(w io.Writer, name string) error {
	if name == "" {
		_, err := fmt.Fprintln(w, strings.Join(Names(), "\n"))
		return err
	}
	text, err := Unit(name)
	if err != nil {
		return err
	}
	_, err = w.Write(text)
	return err
}
