// Package perl ships the PSGI shim's source inside the bridge binary.
package perl

import "embed"

// Shim holds bin/bridge-psgi-runner and lib/Bridge/Runner/*.pm; runners
// extracts it to a cache directory.
//
//go:embed bin lib
var Shim embed.FS
