"""The bench's micro workloads as one WSGI app, routed on PATH_INFO.

/hello   13-byte text/plain body
/big     64 KiB body (one bytes object, built at import)
/echo    the POSTed body back (read in 256 KiB pieces)
/stream  100 chunks of 1 KiB, each yielded separately, no Content-Length,
         X-Accel-Buffering: no so nginx passes each one on at once

bench/harness/workloads.py checks these bodies byte for byte; keep them in step
with micro.psgi and micro.ru.
"""

HELLO = b"Hello, World!"
BIG = b"0123456789abcdef" * 4096
CHUNKS = [(b"%04d" % i) + b"x" * 1019 + b"\n" for i in range(100)]


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def _big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", "65536")])
    return [BIG]


def _echo(environ, start_response):
    try:
        left = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        left = 0
    read = environ["wsgi.input"].read
    parts = []
    while left > 0:
        part = read(min(left, 262144))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    body = b"".join(parts)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _chunks():
    for chunk in CHUNKS:
        yield chunk


def _stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])
    return _chunks()


ROUTES = {"/hello": _hello, "/big": _big, "/echo": _echo, "/stream": _stream}


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    return route(environ, start_response)
