"""The app behind deploy/nginx/*.conf in e2e/nginx_deploy_test.go.

/gated-stream?token=T  sends "first", then waits (20 s at most) until the test
                       creates $E2E_STATE_DIR/T, then sends "second"; with
                       X-Accel-Buffering: no, so nginx must pass "first" on
                       before the test opens the gate.
/peer                  the connection nginx came on, and the forwarded headers.
/upload                the length of the body it received.
anything else          "from the app", so a response from nginx's /static/
                       location is told apart from one by the app.
"""

import os
import time

STATE_DIR = os.environ.get("E2E_STATE_DIR", "/tmp")
TEXT = [("Content-Type", "text/plain")]


def gated_stream(environ, start_response):
    token = environ.get("QUERY_STRING", "").removeprefix("token=")
    gate = os.path.join(STATE_DIR, os.path.basename(token))
    start_response("200 OK", TEXT + [("X-Accel-Buffering", "no")])

    def gen():
        yield b"first\n"
        deadline = time.monotonic() + 20
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                yield b"gate never opened\n"
                return
            time.sleep(0.02)
        yield b"second\n"

    return gen()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/gated-stream":
        return gated_stream(environ, start_response)
    if path == "/peer":
        start_response("200 OK", TEXT)
        keys = ("REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO")
        return [" ".join("%s=%s" % (k, environ.get(k, "")) for k in keys).encode() + b"\n"]
    if path == "/upload":
        n = len(environ["wsgi.input"].read())
        start_response("200 OK", TEXT)
        return [b"%d\n" % n]
    start_response("200 OK", TEXT)
    return [b"from the app\n"]
