// Package python ships the WSGI shim's source inside the bridge binary, so a
// single static file is all a container needs besides the interpreter.
package python

import "embed"

// Shim holds bridge_runner/*.py; runners extracts it to a cache directory.
//
//go:embed bridge_runner/*.py
var Shim embed.FS
