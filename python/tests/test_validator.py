"""Fixture apps wrapped in wsgiref.validate.validator (W34).

The validator raises AssertionError (or warns) when the server side breaks
PEP 3333: the environ it builds, the input/errors streams, how it iterates
and closes the result. Warnings are turned into errors here.
"""
import io
import sys
import warnings
from wsgiref.validate import validator

import pytest

from helpers import body, head, one


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]


def streaming(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    yield b"one "
    yield b"two"


def echo(environ, start_response):
    inp = environ["wsgi.input"]
    first = inp.readline()
    rest = inp.read(int(environ.get("CONTENT_LENGTH") or 0) - len(first))
    more = inp.readlines()
    environ["wsgi.errors"].write("echoed %d bytes\n" % (len(first) + len(rest)))
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [first, rest] + more


def writer(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"and returned"]


def late_error(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    try:
        raise ValueError("x")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                       sys.exc_info())
    yield b"error page"


def file_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"from a file"), 4)


def no_content(environ, start_response):
    start_response("204 No Content", [])
    return []


CASES = [
    (hello, [head()], b"Hello, World!"),
    (hello, [head("HEAD")], b""),
    (streaming, [head(extra=[("QUERY_STRING", "a=1")])], b"one two"),
    (echo, [head("POST", body=b"line1\nrest", end=False, length=14), body(b" end", end=True)],
     b"line1\nrest end"),
    (writer, [head()], b"written and returned"),
    (late_error, [head()], b"error page"),
    (file_body, [head()], b"from a file"),
    (no_content, [head("DELETE")], b""),
]


@pytest.mark.parametrize("app,frames,want", CASES, ids=[c[0].__name__ + "-" + str(i)
                                                         for i, c in enumerate(CASES)])
def test_W34_validator_runs_cleanly(app, frames, want):
    """W34: wsgiref.validate finds nothing to complain about."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = one(validator(app), *frames)
    assert r.error is None, r.error.traceback
    assert r.body == want and not r.abort


def test_W34_validator_failure_becomes_a_500():
    """A checker failure on the app side is a 500 with the assertion in the
    error (for the log), as the conformance fixtures expect."""
    def no_content_type(environ, start_response):
        start_response("200 OK", [])
        return [b"x"]
    r = one(validator(no_content_type), head())
    assert r.status is None and r.error is not None
    assert "Content-Type" in r.error.message
