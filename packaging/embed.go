// Package packaging holds the installers; the control plane's join endpoint
// serves the embedded install.sh to joining nodes.
package packaging

import _ "embed"

// InstallScript is install.sh as built into the binary.
//
//go:embed install.sh
var InstallScript []byte
