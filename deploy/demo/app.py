"""The demo app `make run` serves: plain WSGI, no dependencies."""

import json


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/env":
        body = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)}, indent=2).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])
        return (f"line {i}\n".encode() for i in range(5))
    body = b"Hello from bridge! Try /env or /stream.\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body]
