package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Load reads a control-plane config file strictly: unknown fields are errors.
// A missing file is not an error when optional is true; the result is then empty.
func Load(path string, optional bool) (*ControlPlane, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return &ControlPlane{}, nil
		}
		return nil, fmt.Errorf("failed to read config %s: %w", path, unwrapPathError(err))
	}
	return Parse(path, data)
}

// Parse decodes a control-plane config; name is only used in error messages.
func Parse(name string, data []byte) (*ControlPlane, error) {
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s", name, cleanYAMLError(err))
	}
	c := &ControlPlane{}
	// Case-sensitive and strict: "podCidr" is an unknown field, not podCIDR.
	strictErrs, err := kjson.UnmarshalStrict(jsonData, c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s", name, cleanYAMLError(err))
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("config %s: %s", name, cleanYAMLError(errors.Join(strictErrs...)))
	}
	return c, nil
}

// cleanYAMLError drops the decoder's layered prefixes so the user sees one
// short reason, e.g. `unknown field "foo"`.
func cleanYAMLError(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return strings.ReplaceAll(msg, "\n", "; ")
}

func unwrapPathError(err error) error {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	return err
}

// Resolve builds the effective control-plane config: the file at path (which
// may be absent unless required), overridden by the flags the user set, with
// defaults for the rest, validated. All validation errors are returned.
func Resolve(path string, required bool, flags *Flags, detectAddress func() (string, error)) (*ControlPlane, []error) {
	c, err := Load(path, !required)
	if err != nil {
		return nil, []error{err}
	}
	if flags != nil {
		flags.Apply(c)
	}
	SetDefaults(c, detectAddress)
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}
