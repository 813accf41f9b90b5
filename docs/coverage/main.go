// Command coverage writes docs/coverage.md, the table of which test covers
// which conformance ID (docs/conformance.md, runners/CONTRACT.md) for which
// runner. Run it from anywhere in the repository: `go run ./docs/coverage`
// or `make coverage`. It exits 1 without writing when a test cites an ID
// that is defined nowhere.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "coverage:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	out, err := generate(os.DirFS(root))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, outputFile), out, 0o644)
}

// repoRoot walks up from the working directory to the module root.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, conformanceFile)); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no repository root (go.mod beside " + conformanceFile + ") above the working directory")
		}
		dir = parent
	}
}
