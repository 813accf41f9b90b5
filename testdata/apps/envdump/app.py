"""Env-dump WSGI app: answers with the request's environ as JSON.

The same file runs under bridge (--runner python:app:application) and under
uWSGI (--plugin python3 --wsgi-file app.py); e2e/uwsgi_environ_test.go
compares the two dumps. Every value is written as a string so that the three
env-dump apps (app.py, app.psgi, config.ru) produce comparable output:

- a string is written byte by byte (a WSGI str is bytes-as-latin-1): bytes
  0x20-0x7e except backslash as they are, everything else as \\xHH; a code
  point above U+00FF (never valid in a WSGI environ) as \\u{HHHH};
- anything else as a type description in angle brackets: <bool true>,
  <tuple (1, 0)>, <bytes ...>, <object CLASS>, <callable NAME>.

When ENVDUMP_DIR is set in the process environment and the request has an
X-Envdump-Token header, the dump is also written to ENVDUMP_DIR/TOKEN.json,
so that a HEAD request (whose body nobody sees) can be compared too.
"""

import json
import os
import re


def escape_bytes(b):
    out = []
    for c in b:
        if 0x20 <= c < 0x7F and c != 0x5C:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def escape_str(s):
    out = []
    for ch in s:
        if ord(ch) > 0xFF:
            out.append("\\u{%04x}" % ord(ch))
        else:
            out.append(escape_bytes(bytes([ord(ch)])))
    return "".join(out)


def describe(v):
    if isinstance(v, str):
        return escape_str(v)
    if isinstance(v, bool):
        return "<bool %s>" % ("true" if v else "false")
    if isinstance(v, int):
        return "<int %d>" % v
    if isinstance(v, (bytes, bytearray)):
        return "<bytes %s>" % escape_bytes(v)
    if isinstance(v, tuple):
        return "<tuple (%s)>" % ", ".join(describe(x) for x in v)
    if isinstance(v, list):
        return "<list [%s]>" % ", ".join(describe(x) for x in v)
    if v is None:
        return "<none>"
    if isinstance(v, type) or callable(v) and not hasattr(v, "read"):
        return "<callable %s>" % getattr(v, "__name__", type(v).__name__)
    return "<object %s>" % type(v).__name__


TOKEN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def application(environ, start_response):
    # Read the body so that a server never has to discard it.
    body_len = len(environ["wsgi.input"].read()) if "wsgi.input" in environ else 0
    dump = {k: describe(v) for k, v in environ.items()}
    dump["envdump.body_length"] = str(body_len)
    out = json.dumps(dump, sort_keys=True, indent=1).encode("ascii") + b"\n"
    token = environ.get("HTTP_X_ENVDUMP_TOKEN", "")
    where = os.environ.get("ENVDUMP_DIR")
    if where and TOKEN.match(token):
        with open(os.path.join(where, token + ".json"), "wb") as f:
            f.write(out)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]
