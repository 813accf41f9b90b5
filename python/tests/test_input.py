"""wsgi.input over body frames (W11, W12) and the drain between requests."""
import pytest

from bridge_runner.runner_pb2 import RequestFrame
from bridge_runner.streams import Input, InputError
from helpers import Frames, body, end, head, responses, serve


def make_input(first, rest=(), length=None):
    frames = iter(rest)

    def pull():
        try:
            return next(frames)
        except StopIteration:
            raise AssertionError("pulled a frame that Go never sent") from None

    return Input(pull, first.head.content_length if length is None else length, first)


def test_W11_read_stops_at_content_length_without_blocking():
    """W11: POST 10 bytes; read(100) gives 10, then read() is b'' at once,
    even though Go's `end` frame has not arrived yet."""
    inp = make_input(head(method="POST", body=b"0123456789", end=False, length=10))
    assert inp.read(100) == b"0123456789"
    assert inp.read() == b""
    assert inp.read(5) == b""
    assert inp.readline() == b""
    assert not inp.ended  # the `end` frame is still owed, and nobody waited for it


@pytest.mark.parametrize("arg", [(), (-1,), (None,)])
def test_W11_read_all_forms(arg):
    """W11: read(), read(-1), read(None) read to the end, over several frames."""
    inp = make_input(head(method="POST", body=b"ab", end=False, length=-1),
                     [body(b"cd"), body(b"ef", end=True)])
    assert inp.read(*arg) == b"abcdef"
    assert inp.read(*arg) == b""
    assert inp.read(1) == b""


def test_W11_read_size_spans_frames_and_keeps_the_rest():
    """W11: read(n) returns n bytes (blocking for more frames) and buffers the rest."""
    inp = make_input(head(method="POST", body=b"abc", end=False, length=9),
                     [body(b"defg"), body(b"hi", end=True)])
    assert inp.read(5) == b"abcde"
    assert inp.read(2) == b"fg"
    assert inp.read(10) == b"hi"
    assert inp.read(10) == b""


def test_W11_readline_forms():
    """W11: readline(), readline(size) across frame boundaries."""
    inp = make_input(head(method="POST", body=b"one\ntw", end=False, length=-1),
                     [body(b"o\nthree-long"), body(b"\nlast", end=True)])
    assert inp.readline() == b"one\n"
    assert inp.readline() == b"two\n"
    assert inp.readline(3) == b"thr"
    assert inp.readline(0) == b""
    assert inp.readline(100) == b"ee-long\n"
    assert inp.readline() == b"last"
    assert inp.readline() == b""


def test_W11_readlines_and_iter():
    """W11: readlines(hint) and iteration."""
    inp = make_input(head(method="POST", body=b"a\nb\n", end=False, length=-1),
                     [body(b"c\nd", end=True)])
    assert inp.readlines(1) == [b"a\n"]
    assert list(inp) == [b"b\n", b"c\n", b"d"]
    inp = make_input(head(method="POST", body=b"x\ny\n", length=4))
    assert inp.readlines() == [b"x\n", b"y\n"]
    assert inp.readlines() == []


def test_W11_never_past_content_length():
    """W11: bytes past the declared length are never handed to the app."""
    inp = make_input(head(method="POST", body=b"abcdef", end=False, length=8),
                     [body(b"ghij", end=True)], length=8)
    assert inp.read() == b"abcdefgh"
    inp = make_input(head(method="POST", body=b"abcdef", end=True, length=4), length=4)
    assert inp.read() == b"abcd"


def test_W12_unknown_length_reads_until_end_frame():
    """W12: content_length -1 means "until the end frame", with a real EOF."""
    inp = make_input(head(method="POST", end=False, length=-1),
                     [body(b"x" * 10), body(b""), body(b"y", end=False), end()])
    assert inp.read(4) == b"xxxx"
    assert inp.read() == b"xxxxxxy"
    assert inp.read() == b""


def test_short_body_raises_input_error():
    """An `end` before content_length bytes is a broken upload, not an EOF."""
    inp = make_input(head(method="POST", body=b"abc", end=False, length=10),
                     [body(b"de", end=True)])
    with pytest.raises(InputError):
        inp.read()


def test_body_frames_are_pulled_only_when_the_app_reads():
    """W11, docs/design.md "The wire contract": body frames are taken from the slot on demand, not read ahead."""
    events = []
    frames = Frames([head(method="POST", body=b"aa", end=False, length=6),
                     body(b"bb"), body(b"cc", end=True)],
                    on_pull=lambda n: events.append("pull%d" % n))

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        events.append("app")
        for _ in range(3):
            events.append(inp.read(2))
        start_response("200 OK", [])
        return [b"ok"]

    out = serve(app, frames)
    assert events == ["pull0", "app", b"aa", "pull1", b"bb", "pull2", b"cc", "pull3"]
    assert responses(out)[0].body == b"ok"


def test_unread_body_is_drained_before_the_next_head():
    """CONTRACT Slots: after the response `end`, body frames are discarded up to
    the request's `end`; the next head is then served normally."""
    seen = []

    def app(environ, start_response):
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"r" + environ["PATH_INFO"].encode()]

    frames = [head(method="POST", path="/1", body=b"x" * 10, end=False, length=40),
              body(b"y" * 10), body(b"z" * 10), body(b"w" * 10, end=True),
              head(path="/2")]
    rs = responses(serve(app, frames))
    assert seen == ["/1", "/2"]
    assert [r.body for r in rs] == [b"r/1", b"r/2"]


def test_a_stream_failure_reaches_the_app_as_an_input_error():
    """A cancelled stream while the app reads: the read raises (OSError)."""
    class Cancelled(Exception):
        pass

    def frames():
        yield head(method="POST", body=b"ab", end=False, length=-1)
        raise Cancelled()

    caught = []

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            caught.append(exc)
            raise
        start_response("200 OK", [])
        return [b""]

    out = serve(app, frames())
    assert len(caught) == 1 and isinstance(caught[0], InputError)
    assert out == []  # cancelled: nothing is sent to a client that is gone


def test_stray_head_before_end_starts_the_next_request():
    """A head before the previous request's `end` (a Go bug) is not lost."""
    frames = [head(method="POST", path="/1", body=b"ab", end=False, length=-1),
              head(path="/2")]
    paths = []

    def app(environ, start_response):
        paths.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"x"]

    rs = responses(serve(app, frames))
    assert paths == ["/1", "/2"] and len(rs) == 2


def test_frame_without_head_between_requests_is_dropped(logfile):
    rs = responses(serve(lambda e, s: (s("200 OK", []), [b"x"])[1],
                         [RequestFrame(body=b"junk"), head()]))
    assert len(rs) == 1
    assert any("without a head" in r["message"] for r in logfile())
