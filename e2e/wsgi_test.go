package e2e

import (
	"testing"
)

// TestWSGI runs the WSGI conformance app (testdata/apps/wsgi_conformance)
// behind one bridge (2 workers × 4 threads) and one nginx, through every
// front. Each subtest names the docs/conformance.md items it covers.
func TestWSGI(t *testing.T) {
	fx := startFixture(t, "wsgi_conformance", "python:app:application", 2, 4)
	t.Run("W1_W2_W3_W4_W5_W6_W7_W8_W10_W12_G19_environ", func(t *testing.T) { t.Parallel(); testEnviron(t, fx) })
	t.Run("W11_input", func(t *testing.T) { t.Parallel(); testInput(t, fx) })
	t.Run("W24_W26_write", func(t *testing.T) { t.Parallel(); testWrite(t, fx) })
	t.Run("W22_W23_W26_stream", func(t *testing.T) { t.Parallel(); testStream(t, fx) })
	t.Run("W20_W21_U18_change_of_mind", func(t *testing.T) { t.Parallel(); testChangeOfMind(t, fx) })
	t.Run("W27_G2_error_before_head", func(t *testing.T) { t.Parallel(); testErrorBeforeHead(t, fx) })
	t.Run("W27_G3_U20_W26_error_after_head", func(t *testing.T) { t.Parallel(); testErrorAfterHead(t, fx) })
	t.Run("W26_G4_G5_disconnect", func(t *testing.T) { t.Parallel(); testDisconnect(t, fx) })
	t.Run("W28_G13_U21_content_length", func(t *testing.T) { t.Parallel(); testContentLength(t, fx) })
	t.Run("W30_H14_G14_head", func(t *testing.T) { t.Parallel(); testHead(t, fx) })
	t.Run("G14_H15_W26_no_content", func(t *testing.T) { t.Parallel(); testNoContent(t, fx) })
	t.Run("G11_H16_H17_W16_W17_bad_headers", func(t *testing.T) { t.Parallel(); testBadHeaders(t, fx) })
	t.Run("W14_G23_W26_file_wrapper", func(t *testing.T) { t.Parallel(); testFileWrapper(t, fx) })
	t.Run("G7_G8_stdout", func(t *testing.T) { t.Parallel(); testStdout(t, fx) })
	t.Run("W13_G8_wsgi_errors", func(t *testing.T) { t.Parallel(); testWSGIErrors(t, fx) })
	t.Run("U18_H18_W16_W29_status_reason", func(t *testing.T) { t.Parallel(); testStatusReason(t, fx) })
	t.Run("W34_validator", func(t *testing.T) { t.Parallel(); testValidator(t, fx) })
	t.Run("U18_U23_U29_W30_raw_uwsgi", func(t *testing.T) { t.Parallel(); testRawUwsgi(t, fx) })
}
