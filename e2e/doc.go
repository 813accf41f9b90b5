// Package e2e holds bridge's end-to-end tests: the real bridge binary, real
// runners (Python, Perl, Ruby) and a private nginx 1.22, driven over 127.0.0.1
// and unix sockets. Each test names the docs/conformance.md items it covers.
//
// The apps live in testdata/apps at the repository root; run with
// `go test ./e2e/`.
package e2e
