"""The environ the shim builds from RequestHead (W1-W10, W12, W31, W32, G18, G19)."""
import os
import wsgiref.util

from bridge_runner import wsgi
from helpers import body, end, head, one, responses, serve


def capture(store):
    def app(environ, start_response):
        store.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return app


def test_W1_G18_fresh_dict_per_request():
    """W1/G18: a fresh built-in dict each time; app mutations do not leak."""
    seen = []

    def app(environ, start_response):
        seen.append((type(environ), dict(environ)))
        environ["MUTATED"] = "yes"
        environ["wsgi.version"] = (9, 9)
        start_response("200 OK", [])
        return []

    serve(app, [head(rid="a"), head(rid="b")])
    assert [t for t, _ in seen] == [dict, dict]
    assert "MUTATED" not in seen[1][1]
    assert seen[1][1]["wsgi.version"] == (1, 0)
    assert seen[0][1]["wsgi.input"] is not seen[1][1]["wsgi.input"]
    assert seen[0][1]["wsgi.errors"] is not seen[1][1]["wsgi.errors"]


def test_W2_latin1_bytes_as_str():
    """W2: wire bytes are decoded latin-1, never UTF-8, and round-trip."""
    envs = []
    one(capture(envs), head(path=b"/caf\xc3\xa9", extra=[
        ("QUERY_STRING", b"q=%C3%A9&x=\xff"), ("HTTP_X_NAME", b"\xe9t\xe9"),
        ("REQUEST_URI", b"/caf%C3%A9?q=%C3%A9")]))
    env = envs[0]
    assert env["PATH_INFO"] == "/caf\xc3\xa9"
    assert env["HTTP_X_NAME"] == "\xe9t\xe9"
    assert env["HTTP_X_NAME"].encode("latin-1") == b"\xe9t\xe9"
    assert env["QUERY_STRING"] == "q=%C3%A9&x=\xff"
    for k, v in env.items():
        if "." not in k:
            assert type(k) is str and type(v) is str, k


def test_W3_to_W9_vars_pass_through_unchanged():
    """W3, W4, W5, W6, W7, W8, W9: Go canonicalizes the CGI vars; the shim keeps them as sent
    (method case, SCRIPT_NAME '', QUERY_STRING, CONTENT_* only when sent, HTTP_*
    merged by Go) and adds nothing from the OS environment."""
    os.environ["BRIDGE_TEST_LEAK"] = "1"
    try:
        envs = []
        one(capture(envs), head(method="get", path=b"/foo/bar%2cbaz", extra=[
            ("HTTP_COOKIE", b"a=1; b=2"), ("HTTP_ACCEPT", b"text/html, text/plain"),
            ("REMOTE_PORT", b"5555"), ("REQUEST_URI", b"/foo/bar%252cbaz")]))
    finally:
        del os.environ["BRIDGE_TEST_LEAK"]
    env = envs[0]
    assert env["REQUEST_METHOD"] == "get"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/foo/bar%2cbaz"
    assert env["QUERY_STRING"] == ""
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["SERVER_NAME"] == "example.org" and env["SERVER_PORT"] == "80"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_PORT"] == "5555"
    assert "BRIDGE_TEST_LEAK" not in env and "PATH" not in env
    assert "REMOTE_USER" not in env


def test_W10_W12_wsgi_keys():
    """W10, W12, W14, G19: the wsgi.* keys and bridge.request_id."""
    envs = []
    one(capture(envs), head(scheme="https", rid="abc-123"))
    env = envs[0]
    assert env["wsgi.version"] == (1, 0) and type(env["wsgi.version"]) is tuple
    assert env["wsgi.url_scheme"] == "https"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.file_wrapper"] is wsgi.FileWrapper
    assert env["bridge.request_id"] == "abc-123"


def test_W10_G17_flags_follow_threads_and_workers():
    """W10/G17: multithread and multiprocess tell the truth."""
    envs = []
    serve(capture(envs), [head()], threads=4, workers=3)
    assert envs[0]["wsgi.multithread"] is True
    assert envs[0]["wsgi.multiprocess"] is True
    envs = []
    one(capture(envs), head(scheme=""))
    assert envs[0]["wsgi.url_scheme"] == "http"


def test_W31_expect_continue_is_transparent():
    """W31: the app never has to answer Expect: 100-continue; it just reads."""
    got = []

    def app(environ, start_response):
        got.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"done"]

    r = one(app, head(method="POST", end=False, length=5,
                      extra=[("HTTP_EXPECT", "100-continue")]), body(b"hello", end=True))
    assert got == [b"hello"]
    assert r.status == 200 and r.body == b"done"


def test_W32_request_uri_reconstruction():
    """W32: wsgiref.util.request_uri rebuilds the URL from the environ."""
    envs = []
    one(capture(envs), head(path=b"/a b", extra=[("QUERY_STRING", b"x=1"),
                                                   ("HTTP_HOST", b"example.org:8080")]))
    assert wsgiref.util.request_uri(envs[0]) == "http://example.org:8080/a%20b?x=1"


def test_two_requests_on_one_slot_get_their_own_ids():
    """G19: each request's environ carries its own request id."""
    envs = []
    rs = responses(serve(capture(envs), [head(rid="one"), head(rid="two", end=False), end()]))
    assert [e["bridge.request_id"] for e in envs] == ["one", "two"]
    assert len(rs) == 2
