package joinnode

import "os"

// TakeEnv returns the environment variable name and removes it from this
// process's environment, so no child join starts (systemctl, the node
// runtime's helpers) inherits it. For the bootstrap token: read it first,
// before anything runs.
func TakeEnv(name string) string {
	v := os.Getenv(name)
	_ = os.Unsetenv(name)
	return v
}
