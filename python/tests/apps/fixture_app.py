"""The app the process tests run in a real shim (python/tests/test_process.py)."""
import io
import os
import sys
import threading
import time

# G7: an app that prints at import time must not break the handshake.
print("HTTP/1.1 200 OK\r\n\r\n", flush=True)

_lock = threading.Lock()
CLOSES = {}
SEEN = {}
_INSIDE = 0
_MOST = 0


class Endless:
    """An endless body that counts its close() calls by key (G4)."""

    def __init__(self, key):
        self.key = key

    def __iter__(self):
        while True:
            yield b"tick\n"
            time.sleep(0.05)

    def close(self):
        with _lock:
            CLOSES[self.key] = CLOSES.get(self.key, 0) + 1


class CountingFile(io.FileIO):
    """A file whose close() is counted by key (File frames, G5)."""

    key = "file"

    def close(self):
        if not self.closed:
            with _lock:
                CLOSES[self.key] = CLOSES.get(self.key, 0) + 1
        super().close()


def application(environ, start_response):
    path = environ["PATH_INFO"]
    qs = environ.get("QUERY_STRING", "")
    text = [("Content-Type", "text/plain")]
    if path == "/hello":
        start_response("200 OK", text)
        return [b"Hello, World!"]
    if path == "/echo":
        inp = environ["wsgi.input"]
        start_response("200 OK", text)
        return iter(lambda: inp.read(4), b"")
    if path == "/boom":
        raise ValueError("boom: secret detail")
    if path == "/endless":
        start_response("200 OK", text)
        return Endless(qs)
    if path == "/closes":
        start_response("200 OK", text)
        with _lock:
            return [str(CLOSES.get(qs, 0)).encode()]
    if path == "/print":
        print("HTTP/1.1 200 OK\r\n\r\nnot a response")
        sys.stderr.write("a line on stderr\n")
        environ["wsgi.errors"].write("a line on wsgi.errors\n")
        start_response("200 OK", text)
        return [b"printed"]
    if path == "/rawprint":
        # G7: writes that bypass sys.stdout: fd 1 itself, and a child process.
        os.write(1, b"raw write on fd 1\n")
        os.system("echo child process output")
        start_response("200 OK", text)
        return [b"raw"]
    if path == "/no-content-type":
        start_response("200 OK", [])  # wsgiref.validate rejects this
        return [b"untyped"]
    if path == "/slow":
        time.sleep(float(qs or 1))
        start_response("200 OK", text)
        return [b"slow done"]
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"first ")
        time.sleep(float(qs or 1))
        return [b"second"]
    if path == "/writes":
        write = start_response("200 OK", text)
        for part in (b"a", b"b", b"c"):
            write(part)
        return [b"d"]
    if path == "/file":
        start_response("200 OK", text)
        return environ["wsgi.file_wrapper"](CountingFile(__file__, "rb"))
    if path == "/turn":
        # Pipelined slots: how many requests the app ran at once, at most.
        global _INSIDE, _MOST
        with _lock:
            SEEN[qs] = SEEN.get(qs, 0) + 1
            _INSIDE += 1
            _MOST = max(_MOST, _INSIDE)
        time.sleep(0.05)
        with _lock:
            _INSIDE -= 1
            most = _MOST
        start_response("200 OK", text)
        return [str(most).encode()]
    if path == "/seen":
        start_response("200 OK", text)
        with _lock:
            return [str(SEEN.get(qs, 0)).encode()]
    if path == "/retire":
        # bridge.retire: the runner exits after this response.
        time.sleep(float(qs or 0))
        environ["bridge.retire"]()
        start_response("200 OK", text)
        return [b"bye"]
    if path == "/thread":
        start_response("200 OK", text)
        return [threading.current_thread().name.encode()]
    if path == "/stream":
        start_response("200 OK", text)
        return _stream(float(qs or 1))
    start_response("404 Not Found", text)
    return [b"not found"]


def _stream(pause):
    yield b"a"
    time.sleep(pause)
    yield b"b"
