package e2e

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// uwsgiPacket builds a uwsgi request (U1, U2): modifier1 0, the vars block
// in order, modifier2 0.
func uwsgiPacket(vars [][2]string) []byte {
	var block []byte
	for _, kv := range vars {
		block = binary.LittleEndian.AppendUint16(block, uint16(len(kv[0])))
		block = append(block, kv[0]...)
		block = binary.LittleEndian.AppendUint16(block, uint16(len(kv[1])))
		block = append(block, kv[1]...)
	}
	pkt := []byte{0}
	pkt = binary.LittleEndian.AppendUint16(pkt, uint16(len(block)))
	pkt = append(pkt, 0)
	return append(pkt, block...)
}

// rawUwsgi sends one request the way nginx 1.22 does with Debian's
// uwsgi_params (U7, U8) and reads until bridge closes the connection (U18).
// It returns the response head lines and the body.
func rawUwsgi(t *testing.T, sock, method, uri, reqID string) (head []string, body []byte) {
	t.Helper()
	path, query, _ := strings.Cut(uri, "?")
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	pkt := uwsgiPacket([][2]string{
		{"QUERY_STRING", query}, {"REQUEST_METHOD", method}, {"CONTENT_TYPE", ""}, {"CONTENT_LENGTH", ""},
		{"REQUEST_URI", uri}, {"PATH_INFO", path}, {"DOCUMENT_ROOT", "/usr/share/nginx/html"},
		{"SERVER_PROTOCOL", "HTTP/1.1"}, {"REQUEST_SCHEME", "http"}, {"REMOTE_ADDR", "127.0.0.1"},
		{"REMOTE_PORT", "40000"}, {"SERVER_PORT", "8080"}, {"SERVER_NAME", "127.0.0.1"},
		{"HTTP_HOST", "127.0.0.1"}, {"HTTP_X_REQUEST_ID", reqID},
	})
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	// Not half-closed: nginx keeps its side open, and bridge reads EOF as a
	// client that went away (U24).
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the response until close (U18): %v; got %q", err, resp)
	}
	h, b, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of head in %q", resp)
	}
	return strings.Split(string(h), "\r\n"), b
}

func headerValues(head []string, name string) []string {
	var out []string
	for _, l := range head[1:] {
		k, v, _ := strings.Cut(l, ":")
		if strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// testRawUwsgi speaks uwsgi to bridge's socket directly, to see what nginx
// would hide: U18 (HTTP/1.1 status line with the app's reason, no chunked
// coding, no hop-by-hop headers, connection closed after the response), U29
// and U23/W30 (no body bytes for HEAD, the app's Content-Length kept).
func testRawUwsgi(t *testing.T, fx *fixture) {
	sock := fx.bridge.uwsgiSock
	t.Run("U18_U29_reason_and_framing", func(t *testing.T) {
		t.Parallel()
		head, body := rawUwsgi(t, sock, "GET", "/status?s=200%20Froody", newID(t, "req"))
		if head[0] != "HTTP/1.1 200 Froody" {
			t.Errorf("status line %q, want %q (U18, U29)", head[0], "HTTP/1.1 200 Froody")
		}
		if string(body) != "status\n" {
			t.Errorf("body %q, want %q", body, "status\n")
		}
	})
	t.Run("U18_W22_stream_not_chunked", func(t *testing.T) {
		t.Parallel()
		tok := newID(t, "tok")
		head, body := rawUwsgi(t, sock, "GET", "/stream?n=3&token="+tok, newID(t, "req"))
		if head[0] != "HTTP/1.1 200 OK" || string(body) != "chunk0\nchunk1\nchunk2\n" {
			t.Errorf("got %q and body %q, want HTTP/1.1 200 OK and the raw chunks (U18)", head[0], body)
		}
		for _, h := range []string{"Transfer-Encoding", "Connection", "Keep-Alive"} {
			if v := headerValues(head, h); v != nil {
				t.Errorf("%s: %q sent to nginx (U18)", h, v)
			}
		}
		fx.expectClosedOnce(t, tok)
	})
	t.Run("U23_W30_head_no_body", func(t *testing.T) {
		t.Parallel()
		tok := newID(t, "tok")
		head, body := rawUwsgi(t, sock, "HEAD", "/head?token="+tok, newID(t, "req"))
		if head[0] != "HTTP/1.1 200 OK" {
			t.Errorf("status line %q", head[0])
		}
		if v := headerValues(head, "Content-Length"); len(v) != 1 || v[0] != "10" {
			t.Errorf("Content-Length %q, want the app's 10 (W30)", v)
		}
		if len(body) != 0 {
			t.Errorf("HEAD response carries %d body bytes %q, want none (U23, W30)", len(body), body)
		}
		fx.expectClosedOnce(t, tok)
	})
	t.Run("U23_W30_head_stream_no_body", func(t *testing.T) {
		t.Parallel()
		tok := newID(t, "tok")
		_, body := rawUwsgi(t, sock, "HEAD", "/stream?n=3&token="+tok, newID(t, "req"))
		if len(body) != 0 {
			t.Errorf("HEAD response carries %d body bytes %q, want none (U23, W30)", len(body), body)
		}
		fx.expectClosedOnce(t, tok)
	})
}
