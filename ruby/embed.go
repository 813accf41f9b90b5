// Package ruby ships the Rack shim's source inside the bridge binary.
package ruby

import "embed"

// Shim holds bin/bridge-rack-runner and lib/bridge_runner/*.rb; runners
// extracts it to a cache directory.
//
//go:embed bin lib
var Shim embed.FS
