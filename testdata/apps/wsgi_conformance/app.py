"""A raw WSGI app for bridge's conformance tests (docs/conformance.md W, G, U
items).

It routes on PATH_INFO; each route's docstring names the items it serves.
Query parameters steer a route; `token` names a close() counter.

close() counters (W26, G5) are files in $E2E_STATE_DIR (default: the system
temp dir) so that every runner process shares them: each close() appends one
byte to `close-<token>`, and GET /closecount?token=T answers the count.

Only the standard library is used. Routes under /validated/ run inside
wsgiref.validate.validator (W34), so a server-side violation becomes an
AssertionError, a 500 and a log line.
"""
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
from wsgiref.validate import validator

STATE_DIR = os.environ.get("E2E_STATE_DIR") or tempfile.gettempdir()
_TOKEN_OK = re.compile(r"[A-Za-z0-9_.-]{1,100}\Z").match
TEXT = [("Content-Type", "text/plain")]


def _query(environ):
    return urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)


def _param(environ, name, default=""):
    return _query(environ).get(name, [default])[0]


def _state_path(kind, token):
    if not _TOKEN_OK(token):
        raise ValueError("bad token %r" % (token,))
    return os.path.join(STATE_DIR, "%s-%s" % (kind, token))


def _bump(kind, token):
    """Append one byte to a counter file; O_APPEND keeps processes apart."""
    if not token:
        return
    fd = os.open(_state_path(kind, token), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def _count(kind, token):
    try:
        return os.path.getsize(_state_path(kind, token))
    except FileNotFoundError:
        return 0


class Closing:
    """An iterable whose close() is counted (W26, G5).

    No __len__, so the server cannot learn the body size from it (W29).
    """

    def __init__(self, iterable, token):
        self._iterable = iterable
        self._token = token

    def __iter__(self):
        return iter(self._iterable)

    def close(self):
        _bump("close", self._token)
        close = getattr(self._iterable, "close", None)
        if close is not None:
            close()


class CountingBytesIO(io.BytesIO):
    """A file-like whose close() is counted (W14: file_wrapper closes it)."""

    token = ""

    def close(self):
        if not self.closed:
            _bump("close", self.token)
        super().close()


class CountingReader(io.BufferedReader):
    """A real file (mode, name, fileno all genuine, so G23 shortcuts apply)
    whose close() is counted."""

    token = ""

    def close(self):
        if not self.closed:
            _bump("close", self.token)
        super().close()


def pattern(size):
    """Deterministic file content: byte i is i mod 251 (251 is prime, so an
    offset error shows up unless it is a multiple of 251)."""
    block = bytes(range(251))
    return (block * (size // 251 + 1))[:size]


# -- routes --------------------------------------------------------------------


def env(environ, start_response):
    """W1-W10, W12, G19: the environ as JSON.

    str values go out as they are (a latin-1 str per W2: the test maps each
    code point back to one byte); other values as JSON when they can be,
    and every key's Python type is listed.
    """
    out = {"environ_type": type(environ).__name__, "types": {}, "vars": {}}
    for key, value in environ.items():
        out["types"][key] = type(value).__name__
        if isinstance(value, (str, bool, int)) or value is None:
            out["vars"][key] = value
        elif isinstance(value, tuple):
            out["vars"][key] = list(value)
    body = json.dumps(out, sort_keys=True).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _input_op(inp, op):
    name, _, arg = op.partition(":")
    if arg == "None":
        arg = None
    elif arg:
        arg = int(arg)
    if name == "read":
        return inp.read() if arg == "" else inp.read(arg)
    if name == "readline":
        return inp.readline() if arg == "" else inp.readline(arg)
    if name == "readlines":
        return inp.readlines() if arg == "" else inp.readlines(arg)
    if name == "iter":
        return list(inp)
    if name == "chunks":
        # read(arg) until b'': "<sha256>:<total>:<reads>"
        h, total, reads = hashlib.sha256(), 0, 0
        while True:
            data = inp.read(arg)
            if type(data) is not bytes:
                return data
            reads += 1
            if not data:
                return ("%s:%d:%d" % (h.hexdigest(), total, reads)).encode()
            h.update(data)
            total += len(data)
    raise ValueError("unknown op %r" % (op,))


def _describe(value):
    if isinstance(value, list):
        return {"type": "list", "items": [_describe(v) for v in value]}
    if isinstance(value, bytes):
        return {"type": "bytes", "value": value.decode("latin-1")}
    return {"type": type(value).__name__}


def input_(environ, start_response):
    """W11: wsgi.input read patterns; ?op=read:100&op=read&op=readline:3 ...

    Each op's result is reported with its type; bytes as latin-1 text.
    """
    inp = environ["wsgi.input"]
    started = time.monotonic()
    results = []
    for op in _query(environ).get("op", []):
        results.append(dict(_describe(_input_op(inp, op)), op=op))
    out = {"results": results, "seconds": time.monotonic() - started}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(out).encode("ascii")]


def write(environ, start_response):
    """W24: write() data goes first, then the iterable's; W26 close once."""
    w = start_response("200 OK", TEXT)
    w(b"w1-")
    w(b"")
    w(b"w2-")
    return Closing([b"i1-", b"", b"i2"], _param(environ, "token"))


def stream(environ, start_response):
    """W22, W23: empty chunks around real ones, sleeps between them.

    ?n=chunks&delay=seconds; body "chunk0\\nchunk1\\n..." without a
    Content-Length (a generator has no len).
    """
    n = int(_param(environ, "n", "3"))
    delay = float(_param(environ, "delay", "0"))
    start_response("200 OK", TEXT + [("X-Chunks", str(n))])

    def gen():
        yield b""
        for i in range(n):
            if i and delay:
                time.sleep(delay)
            yield b""
            yield b"chunk%d\n" % i
            yield b""
        yield b""

    return Closing(gen(), _param(environ, "token"))


def endless(environ, start_response):
    """G4, W26: ticks every 50 ms until the client goes away (30 s at most).

    ?pad=N makes each tick line N bytes long, so that a buffering nginx
    passes them on (it forwards full buffers).
    """
    pad = int(_param(environ, "pad", "0"))
    start_response("200 OK", TEXT)

    def gen():
        deadline = time.monotonic() + 30
        i = 0
        while time.monotonic() < deadline:
            line = b"tick %d" % i
            yield line + b"." * (pad - len(line) - 1) + b"\n"
            i += 1
            time.sleep(0.05)

    return Closing(gen(), _param(environ, "token"))


def change_of_mind(environ, start_response):
    """W21, W20: yield b'' (headers not sent yet), then replace the status
    with exc_info; the client must get 500 'Oops' with body 'err'."""
    start_response("200 OK", TEXT + [("X-First", "yes")])

    def gen():
        yield b""
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain"), ("X-Second", "yes")],
                           sys.exc_info())
        yield b"err"

    return Closing(gen(), _param(environ, "token"))


def raise_before(environ, start_response):
    """W27, G2: an exception before start_response."""
    raise RuntimeError("secret-before-" + _param(environ, "marker"))


def raise_in_iter(environ, start_response):
    """W27, G2, W26: an exception while iterating, before any non-empty chunk."""
    start_response("200 OK", TEXT)

    def gen():
        yield b""
        raise RuntimeError("secret-iter-" + _param(environ, "marker"))

    return Closing(gen(), _param(environ, "token"))


def raise_after(environ, start_response):
    """W27, G3, U20, W26: an exception after the first chunk went out."""
    start_response("200 OK", TEXT)

    def gen():
        yield b"first-chunk\n"
        time.sleep(0.1)
        raise RuntimeError("secret-after-" + _param(environ, "marker"))

    return Closing(gen(), _param(environ, "token"))


def no_start_response(environ, start_response):
    """W27: an iterable used up without start_response."""
    return Closing(iter([b""]), _param(environ, "token"))


BAD_HEADERS = {
    "crlf": ("X-Bad", "a\r\nSet-Cookie: injected=1"),
    "lf": ("X-Bad", "a\nX-Injected: 1"),
    "cr": ("X-Bad", "a\rX-Injected: 1"),
    "nul": ("X-Bad", "a\x00b"),
    "name-space": ("X Bad", "1"),
    "name-colon": ("X-Injected:", "1"),
    "name-crlf": ("X-Bad\r\nX-Injected", "1"),
    "wide": ("X-Bad", "caf\u20ac"),
    "status-crlf": None,
}


def bad_header(environ, start_response):
    """G11, H16, W17, W16: an invalid header or status raises in
    start_response; uncaught, it must give 500 and nothing injected."""
    kind = _param(environ, "kind")
    if kind == "status-crlf":
        start_response("200 OK\r\nX-Injected: 1", TEXT)
    else:
        start_response("200 OK", TEXT + [BAD_HEADERS[kind]])
    return Closing([b"should not be sent\n"], _param(environ, "token"))


def file_wrapper(environ, start_response):
    """W14, G23: wsgi.file_wrapper over a real file or a BytesIO.

    ?src=self (this source file) | gen (a generated file of ?size bytes,
    see pattern()) | bytesio (b'abc'), ?block=N, ?offset=K (seek first).
    """
    token = _param(environ, "token")
    src = _param(environ, "src", "self")
    block = int(_param(environ, "block", "8192"))
    offset = int(_param(environ, "offset", "0"))
    if src == "bytesio":
        f = CountingBytesIO(b"abc")
    else:
        if src == "self":
            path = os.path.abspath(__file__)
        else:
            size = int(_param(environ, "size", "0"))
            path = _state_path("file", "%d" % size)
            if not os.path.exists(path) or os.path.getsize(path) != size:
                tmp = path + ".%d.tmp" % os.getpid()
                with open(tmp, "wb") as out:
                    out.write(pattern(size))
                os.replace(tmp, path)
        f = CountingReader(io.FileIO(path, "rb"))
    f.token = token
    f.seek(offset)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, block)


def content_length(environ, start_response):
    """W28, G13, U21: ?mode=over (declares 5, yields 'hel', 'lo wo', 'rld')
    | under (declares 20, sends 'short')."""
    token = _param(environ, "token")
    if _param(environ, "mode") == "over":
        start_response("200 OK", TEXT + [("Content-Length", "5")])

        def gen():
            yield b"hel"
            yield b"lo wo"
            _bump("overiter", token)  # must never run: the shim stops at 5 bytes
            yield b"rld"

        return Closing(gen(), token)
    start_response("200 OK", TEXT + [("Content-Length", "20")])
    return Closing(iter([b"short"]), token)


def head(environ, start_response):
    """W30, G14, H14: a body with an explicit Content-Length; the method
    the app saw is echoed in X-Method."""
    start_response("200 OK", TEXT + [("Content-Length", "10"),
                                     ("X-Method", environ["REQUEST_METHOD"])])
    return Closing([b"hello head"], _param(environ, "token"))


def no_content(environ, start_response):
    """G14, H15: a 204 with a Content-Type, a Content-Length and a body."""
    start_response("204 No Content", [("Content-Type", "text/plain"), ("Content-Length", "5"),
                                      ("X-Kept", "1")])
    return Closing(iter([b"hello"]), _param(environ, "token"))


def print_(environ, start_response):
    """G7, G8: stdout, fd 1 and stderr writes never reach the response."""
    marker = _param(environ, "marker")
    print("HTTP/1.1 200 OK\r\n\r\nprint-marker-" + marker)
    sys.stdout.flush()
    os.write(1, b"fd1-marker-" + marker.encode() + b"\n")
    sys.stderr.write("stderr-marker-" + marker + "\n")
    sys.stderr.flush()
    start_response("200 OK", TEXT)
    return [b"clean\n"]


def errors(environ, start_response):
    """W13, G8: wsgi.errors lines become log records of this request."""
    marker = _param(environ, "marker")
    err = environ["wsgi.errors"]
    err.write("errors-marker-" + marker + " caf\u00e9 \u2603\n")
    err.writelines(["errors-lines-", marker, "\n"])
    err.write("errors-partial-" + marker)
    err.flush()
    start_response("200 OK", TEXT)
    return [b"logged\n"]


def status(environ, start_response):
    """U18, H18, W16: the app's status line, ?s=200 Froody."""
    start_response(_param(environ, "s", "200 OK"), TEXT)
    return [b"status\n"]


def closecount(environ, start_response):
    """How often close() ran for ?token=T (W26, G5), and whether a
    generator ran on past a Content-Length (?kind=overiter)."""
    kind = _param(environ, "kind", "close")
    n = _count(kind, _param(environ, "token"))
    start_response("200 OK", TEXT)
    return [b"%d" % n]


def _validated_inner(environ, start_response):
    path = environ["PATH_INFO"][len("/validated"):]
    if path == "/hello":
        start_response("200 OK", TEXT)
        return [b"hello validated\n"]
    if path == "/stream":
        start_response("200 OK", TEXT)
        return (b"v%d\n" % i for i in range(3))
    if path == "/write":
        w = start_response("200 OK", TEXT)
        w(b"w-")
        return [b"i"]
    if path == "/input":
        inp = environ["wsgi.input"]
        body = inp.read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", TEXT)
        return [b"got %d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"validated-file"), 4)
    start_response("404 Not Found", TEXT)
    return [b"no such validated route\n"]


validated = validator(_validated_inner)

ROUTES = {
    "/input": input_,
    "/write": write,
    "/stream": stream,
    "/endless": endless,
    "/change_of_mind": change_of_mind,
    "/raise_before": raise_before,
    "/raise_in_iter": raise_in_iter,
    "/raise_after": raise_after,
    "/no_start_response": no_start_response,
    "/bad_header": bad_header,
    "/file_wrapper": file_wrapper,
    "/content_length": content_length,
    "/head": head,
    "/no_content": no_content,
    "/print": print_,
    "/errors": errors,
    "/status": status,
    "/closecount": closecount,
}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/env" or path.startswith("/env/"):
        return env(environ, start_response)
    if path.startswith("/validated/"):
        return validated(environ, start_response)
    route = ROUTES.get(path)
    if route is None:
        start_response("404 Not Found", TEXT)
        return [b"no such route\n"]
    return route(environ, start_response)
