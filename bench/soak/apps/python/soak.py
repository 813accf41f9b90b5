"""The soak's app (bench/soak): plain WSGI, routed on PATH_INFO.

GET  /hello         13 bytes: Hello, World!
POST /upload        reads the body, answers "<length> <sha256 hex>"
GET  /stream?n=N    N chunks of 1 KiB ("%04d" % (i % 10000), 1019 x's, "\n"),
                    each yielded alone, no Content-Length, X-Accel-Buffering: no
GET  /big?kib=N     N KiB of "0123456789abcdef" repeated, in 64 KiB pieces,
                    with Content-Length

soak.psgi and soak.ru answer the same bytes; bench/soak/check.go checks them.
"""

import hashlib
import re

HELLO = b"Hello, World!"
PIECE = b"0123456789abcdef" * 4096  # 64 KiB
MAX_KIB = 1 << 18  # 256 MiB


def _arg(environ, name, default, most):
    m = re.search(r"(?:^|&)%s=(\d+)" % name, environ.get("QUERY_STRING", ""))
    return min(int(m.group(1)), most) if m else default


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def _upload(environ, start_response):
    try:
        left = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        left = 0
    read = environ["wsgi.input"].read
    digest, n = hashlib.sha256(), 0
    while left > 0:
        part = read(min(left, 262144))
        if not part:
            break
        digest.update(part)
        n += len(part)
        left -= len(part)
    body = b"%d %s" % (n, digest.hexdigest().encode())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _chunks(n):
    for i in range(n):
        yield (b"%04d" % (i % 10000)) + b"x" * 1019 + b"\n"


def _stream(environ, start_response):
    n = _arg(environ, "n", 100, 100000)
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])
    return _chunks(n)


def _pieces(size):
    while size > 0:
        part = PIECE if size >= len(PIECE) else PIECE[:size]
        size -= len(part)
        yield part


def _big(environ, start_response):
    size = _arg(environ, "kib", 1024, MAX_KIB) * 1024
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return _pieces(size)


ROUTES = {"/hello": _hello, "/upload": _upload, "/stream": _stream, "/big": _big}


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    return route(environ, start_response)
