package component

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"

	"sigs.k8s.io/yaml"
)

// Arguer is implemented by components that run an upstream program in-process
// from a command line. Nothing shows those arguments in `ps`, so the process
// logs them and records them for `status --args` (auditors, kube-bench).
type Arguer interface {
	Args() []string
}

// FormatFlags renders flags as --name=value, sorted by name so logs and
// records are stable.
func FormatFlags(flags map[string]string) []string {
	args := make([]string, 0, len(flags))
	for _, k := range slices.Sorted(maps.Keys(flags)) {
		args = append(args, fmt.Sprintf("--%s=%s", k, flags[k]))
	}
	return args
}

// ComponentArgs is one component's effective command line.
type ComponentArgs struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
}

// Line renders the command line as `name --flag=value ...`, the form
// kube-bench and `ps` readers parse.
func (c ComponentArgs) Line() string {
	return strings.Join(append([]string{c.Name}, c.Args...), " ")
}

// EffectiveArgs is what the args file holds: the writing process and the
// command line of each of its components, in start order.
type EffectiveArgs struct {
	PID        int             `json:"pid"`
	Components []ComponentArgs `json:"components"`
}

// CollectArgs lists the components that implement Arguer. Call it after Init:
// some build their command line there.
func CollectArgs(components []Component) []ComponentArgs {
	var out []ComponentArgs
	for _, c := range components {
		if a, ok := c.(Arguer); ok {
			out = append(out, ComponentArgs{Name: c.Name(), Args: a.Args()})
		}
	}
	return out
}

// ArgsRecorder is a component that, placed last, logs and records the
// command lines of the components before it: the manager initialises every
// component before it starts any, so its Init sees final arguments and runs
// before the first start. Write stores the file at Path (atomically, 0600).
type ArgsRecorder struct {
	Components []Component
	Path       string
	Write      func(path string, data []byte, mode os.FileMode) error
	Log        io.Writer
}

func (r *ArgsRecorder) Name() string { return "effective-args" }

func (r *ArgsRecorder) Init(context.Context) error {
	args := CollectArgs(r.Components)
	if r.Log != nil {
		for _, a := range args {
			fmt.Fprintf(r.Log, "Running %s\n", a.Line())
		}
	}
	data, err := RenderArgs(EffectiveArgs{PID: os.Getpid(), Components: args})
	if err != nil {
		return err
	}
	if err := r.Write(r.Path, data, 0o600); err != nil {
		return fmt.Errorf("failed to record the effective arguments: %w", err)
	}
	return nil
}

func (r *ArgsRecorder) Start(context.Context) error { return nil }
func (r *ArgsRecorder) Stop() error                 { return nil }

// RenderArgs returns the args file's content.
func RenderArgs(e EffectiveArgs) ([]byte, error) {
	body, err := yaml.Marshal(e)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Effective arguments of the running components, written at every start.\n"), body...), nil
}

// ReadArgs loads the args file and checks that the process that wrote it
// still runs, so what it reports is what is running now.
func ReadArgs(path string) (*EffectiveArgs, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s not found: has the service been started on this host?", path)
	}
	if err != nil {
		return nil, err
	}
	var e EffectiveArgs
	if err := yaml.UnmarshalStrict(data, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !processRuns(e.PID) {
		return nil, fmt.Errorf("the process that wrote %s (pid %d) is not running: start the service first", path, e.PID)
	}
	return &e, nil
}

func processRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// CheckArgsName accepts "" (every component) or one of known.
func CheckArgsName(name string, known []string) error {
	if name == "" || slices.Contains(known, name) {
		return nil
	}
	return fmt.Errorf("unknown component %q: one of %s", name, strings.Join(known, ", "))
}

// PrintArgsFile prints the args file at path: every component, or the one
// named, which must be one of known.
func PrintArgsFile(w io.Writer, path, name string, known []string) error {
	if err := CheckArgsName(name, known); err != nil {
		return err
	}
	args, err := ReadArgs(path)
	if err != nil {
		return err
	}
	return args.Print(w, name)
}

// Print writes one line per component, or only the component named.
func (e *EffectiveArgs) Print(w io.Writer, name string) error {
	names := make([]string, len(e.Components))
	for i, c := range e.Components {
		names[i] = c.Name
	}
	if err := CheckArgsName(name, names); err != nil {
		return err
	}
	for _, c := range e.Components {
		if name == "" || c.Name == name {
			fmt.Fprintln(w, c.Line())
		}
	}
	return nil
}
