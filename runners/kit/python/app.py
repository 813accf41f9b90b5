"""The conformance kit app for the Python (WSGI) runner.

`bridge conform --runner python:app:application --chdir runners/kit/python`
calls it to check the runner against runners/CONTRACT.md. Its routes, its
counters (/stats) and its print at import time are specified in
runners/kit/README.md; keep them in step with it. Plain PEP 3333, no
framework: a failure must be the runner's, not a library's.
"""
import atexit
import os
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qsl

# Careless apps print at import time: the runner must keep this off the
# handshake pipe (it goes to the log).
print("KIT-IMPORT-PRINT")

FILE_LINE = b"bridge-kit-file\n"
FILE_LINES = 20000  # 320,000 bytes

_lock = threading.Lock()  # guards everything below: the runner may use threads
_stats = {}  # request id -> {"calls", "bodies", "closes"}
_active = 0
_max_active = 0
_file_path = None


def _ids(rid):
    return _stats.setdefault(rid, {"calls": 0, "bodies": 0, "closes": 0})


def _enter(rid):
    global _active, _max_active
    with _lock:
        _ids(rid)["calls"] += 1
        _active += 1
        _max_active = max(_max_active, _active)


def _leave():
    global _active
    with _lock:
        _active -= 1


class Counted:
    """Counts this body for its request id, and each close() of it. The call
    it answers stays active until its first close."""

    def __init__(self, rid):
        self.rid = rid
        self.closed = False
        with _lock:
            _ids(rid)["bodies"] += 1

    def close(self):
        global _active
        with _lock:
            _ids(self.rid)["closes"] += 1
            first, self.closed = not self.closed, True
            if first:
                _active -= 1


class Body(Counted):
    """A response body: the given chunks (a list, or a generator that runs as
    the runner asks for each chunk), with a counted close()."""

    def __init__(self, rid, chunks):
        super().__init__(rid)
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        close = getattr(self.chunks, "close", None)  # a generator's finally
        try:
            if close is not None:
                close()
        finally:
            super().close()


class KitFile(Counted):
    """The /file body: the file object handed to wsgi.file_wrapper. It has
    what a runner may use to send the file itself (name, mode, fileno, tell)
    and a counted close()."""

    def __init__(self, rid, path, skip):
        self.f = open(path, "rb", buffering=0)
        self.f.seek(skip)
        super().__init__(rid)

    name = property(lambda self: self.f.name)
    mode = property(lambda self: self.f.mode)

    def fileno(self):
        return self.f.fileno()

    def tell(self):
        return self.f.tell()

    def read(self, size=-1):
        return self.f.read(size)

    def close(self):
        try:
            self.f.close()
        finally:
            super().close()


def _kit_file():
    """The file /file serves, created once per process."""
    global _file_path
    with _lock:
        if _file_path is None:
            fd, path = tempfile.mkstemp(prefix="bridge-kit-", suffix=".txt")
            with os.fdopen(fd, "wb") as f:
                f.write(FILE_LINE * FILE_LINES)
            _file_path = path
            atexit.register(os.unlink, path)  # not one temp file per run left behind
        return _file_path


def _num(query, name, default=0):
    value = query.get(name, "")
    return int(value) if value.isdigit() else default


def _sleep_ms(ms):
    if ms > 0:
        time.sleep(ms / 1000.0)


def application(environ, start_response):
    rid = environ.get("bridge.request_id", "")
    _enter(rid)
    try:
        return _route(environ, start_response, rid)
    except BaseException:
        _leave()  # a call that raises is active until it raises
        raise


def _route(environ, start_response, rid):
    global _max_active
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    text = [("Content-Type", "text/plain")]

    if path == "/hello":
        # A plain list: the runner can tell it is one chunk (C7).
        _leave()
        start_response("200 OK", text)
        return [b"hello"]

    if path == "/echo" and method == "POST":
        size = _num(query, "read", 65536) or 65536
        inp = environ["wsgi.input"]
        pieces = list(iter(lambda: inp.read(size), b""))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Body(rid, pieces)

    if path == "/echo-stream" and method == "POST":
        size = _num(query, "read", 65536) or 65536
        inp = environ["wsgi.input"]

        def pieces():
            while True:
                piece = inp.read(size)
                if not piece:
                    return
                yield piece

        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Body(rid, pieces())

    if path == "/stream":
        n, ms = _num(query, "n"), _num(query, "ms")

        def chunks():
            i = 1
            while n == 0 or i <= n:
                if i > 1:
                    _sleep_ms(ms)
                yield b"chunk-%d\n" % i
                i += 1

        start_response("200 OK", text + [("X-Accel-Buffering", "no")])
        return Body(rid, chunks())

    if path == "/sleep":
        _sleep_ms(_num(query, "ms"))
        start_response("200 OK", text)
        return Body(rid, [b"slept"])

    if path == "/deferred":
        ms = _num(query, "ms")

        def chunks():
            yield b""
            _sleep_ms(ms)
            yield b"late"

        start_response("200 OK", text)
        return Body(rid, chunks())

    if path == "/error-call":
        raise RuntimeError("KIT-SECRET error-call")

    if path in ("/error-before", "/error-after"):
        first = b"" if path == "/error-before" else b"partial"

        def chunks():
            yield first
            raise RuntimeError("KIT-SECRET " + path[1:])

        start_response("200 OK", text)
        return Body(rid, chunks())

    if path == "/file":
        body = KitFile(rid, _kit_file(), _num(query, "skip"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](body)

    if path == "/print":
        print("KIT-STDOUT")
        sys.stdout.flush()
        start_response("200 OK", text)
        return Body(rid, [b"printed"])

    if path == "/retire":
        environ["bridge.retire"]()
        start_response("200 OK", text)
        return Body(rid, [b"bye"])

    if path == "/stats":
        with _lock:
            s = _stats.get(query.get("id", ""), {"calls": 0, "bodies": 0, "closes": 0})
            out = '{"calls":%d,"bodies":%d,"closes":%d,"max_active":%d}' % (
                s["calls"], s["bodies"], s["closes"], _max_active)
            if query.get("reset") == "1":
                _max_active = 0
        start_response("200 OK", [("Content-Type", "application/json")])
        return Body(rid, [out.encode()])

    start_response("404 Not Found", text)
    return Body(rid, [b"not found"])
