"""environ['bridge.retire'] in the WSGI layer: the end frame carries
`retire` whatever the response's shape, no further request is served on
the slot, and the gateway's on_retire runs once (CONTRACT "Slots")."""
from bridge_runner import wsgi
from helpers import head, responses


def _retiring(body):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/retire":
            environ["bridge.retire"]()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()
    return app


def _serve(app, frames):
    gw = wsgi.Gateway(app)
    calls = []
    gw.on_retire = lambda: calls.append(1)
    return responses(list(gw.serve(frames))), calls, gw


def _gen():
    yield b"a"
    yield b"b"


def _boom():
    yield b"partial"
    raise RuntimeError("after the head")


def test_end_frame_carries_retire_for_every_body_shape():
    for body, text in ((lambda: [b"bye"], b"bye"), (_gen, b"ab"), (lambda: [], b"")):
        rs, calls, gw = _serve(_retiring(body), [head(path="/retire", rid="r1"),
                                                 head(path="/retire", rid="r2")])
        assert len(rs) == 1, "no request after the retiring one"
        assert rs[0].body == text and rs[0].frames[-1].retire
        assert all(not f.retire for f in rs[0].frames[:-1])
        assert calls == [1] and gw.draining


def test_error_after_retire_still_retires():
    rs, calls, _ = _serve(_retiring(_boom), [head(path="/retire")])
    last = rs[0].frames[-1]
    assert last.error.kind == "app" and last.abort and last.retire
    assert calls == [1]


def test_other_requests_do_not_retire():
    rs, calls, gw = _serve(_retiring(lambda: [b"x"]), [head(path="/a", rid="1"), head(path="/b", rid="2")])
    assert len(rs) == 2 and not any(f.retire for r in rs for f in r.frames)
    assert calls == [] and not gw.draining
