"""start_response, write() and the response frames (W15-W30, G1, G2, G10-G14)."""
import sys
import threading
import weakref

import pytest

from helpers import head, one, responses, serve


def app_of(status="200 OK", headers=(), body=(b"ok",)):
    def app(environ, start_response):
        start_response(status, list(headers))
        return list(body)
    return app


def failing(status, headers):
    """An app whose start_response call is expected to raise; it records why."""
    seen = []

    def app(environ, start_response):
        try:
            start_response(status, headers)
        except Exception as exc:
            seen.append(exc)
            raise
        return [b"never"]
    app.seen = seen
    return app


def assert_500_before_head(r, kind):
    """G2: {error, end}, no head, nothing of the error in any body."""
    assert len(r.frames) == 1
    assert r.status is None and r.body == b""
    assert r.error is not None and r.error.kind == kind
    assert not r.abort
    assert r.error.message and r.error.traceback


def test_G1_hello_world_is_one_frame():
    """G1, docs/design.md "The wire contract": hello world = one frame in, one frame out (head+body+end)."""
    out = serve(app_of(headers=[("Content-Type", "text/plain")], body=[b"Hello, World!"]), [head()])
    assert len(out) == 1
    r = responses(out)[0]
    assert (r.status, r.reason, r.body) == (200, "OK", b"Hello, World!")
    assert r.headers == [("Content-Type", "text/plain"), ("Content-Length", "13")]
    assert not r.abort and r.error is None


def test_W15_positional_start_response_returns_write():
    """W15: start_response(status, headers, exc_info=None) returns write."""
    def app(environ, start_response):
        write = start_response("200 OK", [])
        assert callable(write)
        write(b"a")
        return []
    assert one(app, head()).body == b"a"


@pytest.mark.parametrize("status", [
    "200", "2000 OK", "20 OK", "abc OK", "200\tOK", "200 O\nK", "200 O\rK", "200 \x00",
    "200 caf\u0100", "200 OK\x7f", b"200 OK", 200, "099 Low", "100 Continue", "101 Switching",
])
def test_W16_G10_bad_status_raises_in_start_response(status):
    """W16/G10: a malformed status raises in start_response → 500 (W27)."""
    app = failing(status, [])
    r = one(app, head())
    assert len(app.seen) == 1
    assert_500_before_head(r, "protocol")


@pytest.mark.parametrize("status,reason", [
    ("200 OK", "OK"), ("404 Not Found", "Not Found"), ("299 ", ""), ("599 caf\xe9", "caf\xe9"),
    ("999 Whatever", "Whatever"), ("404 Nope", "Nope"),
])
def test_W16_good_status_and_reason_kept(status, reason):
    """W16/G9: the app's reason phrase is kept as given, not taken from a table (U18)."""
    r = one(app_of(status=status), head())
    assert r.status == int(status[:3]) and r.reason == reason


@pytest.mark.parametrize("headers", [
    (("Content-Type", "text/plain"),),                     # not a list
    [["Content-Type", "text/plain"]],                      # item not a tuple
    [("Content-Type", "text/plain", "x")],                 # not a pair
    [("Content-Type", b"text/plain")],                     # bytes value
    [(b"Content-Type", "text/plain")],                     # bytes name
    [("X Foo", "1")], [("X:Foo", "1")], [("", "1")], [("X-\xe9", "1")],
    [("X-A", "a\r\nSet-Cookie: x=1")],                     # G11 header injection
    [("X-A", "a\nb")], [("X-A", "a\x00b")], [("X-A", "a\x7fb")], [("X-A", "a\x01")],
    [("X-A", "\u0100")], [("Status", "200 OK")],
])
def test_W17_G11_bad_headers_raise(headers):
    """W17/G11/H16: bad header lists raise in start_response → 500, and nothing
    of the bad header goes out."""
    app = failing("200 OK", headers)
    r = one(app, head())
    assert len(app.seen) == 1
    assert_500_before_head(r, "protocol")
    assert b"Set-Cookie" not in r.frames[0].SerializeToString()


@pytest.mark.parametrize("name", ["Connection", "keep-alive", "Proxy-Authenticate",
                                  "Proxy-Authorization", "TE", "Trailers", "Transfer-Encoding",
                                  "Upgrade"])
def test_W18_hop_by_hop_raises(name):
    """W18/G12: hop-by-hop headers from the app are a fatal error."""
    app = failing("200 OK", [(name, "x")])
    r = one(app, head())
    assert isinstance(app.seen[0], AssertionError)
    assert_500_before_head(r, "protocol")


def test_G11_header_values_latin1_and_tab_allowed():
    """G11/G21: HTAB and obs-text are allowed and sent as latin-1 bytes."""
    r = one(app_of(headers=[("X-A", "caf\xe9\tok"), ("X-Empty", "")]), head())
    assert r.frames[0].head.headers[0].value == b"caf\xe9\tok"
    assert r.header("X-Empty") == ""


def test_W19_second_call_without_exc_info_raises():
    """W19: a second start_response without exc_info raises AssertionError,
    even when the first call itself raised."""
    errors = []

    def app(environ, start_response):
        try:
            start_response("bad", [])
        except AssertionError:
            pass
        try:
            start_response("200 OK", [])
        except AssertionError as exc:
            errors.append(exc)
            raise
        return [b"x"]

    r = one(app, head())
    assert len(errors) == 1 and "already set" in str(errors[0])
    assert_500_before_head(r, "app")


def test_W20_exc_info_before_head_replaces_status():
    """W20: start_response with exc_info before the head replaces it."""
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("late")
        except ValueError:
            start_response("503 Busy", [("X-Second", "2")], sys.exc_info())
        return [b"busy"]

    r = one(app, head())
    assert (r.status, r.reason, r.body) == (503, "Busy", b"busy")
    assert r.header("X-First") is None and r.header("X-Second") == "2"


def test_W20_G3_exc_info_after_head_reraises_and_aborts():
    """W20/G3: after the head, start_response(exc_info) re-raises the app's
    exception; the response ends with {error, end, abort}."""
    raised = []

    class Boom(Exception):
        pass

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise Boom("after head")
        except Boom:
            try:
                start_response("500 Error", [], sys.exc_info())
            except Boom as exc:
                raised.append(exc)
                raise
        return []

    r = one(app, head())
    assert len(raised) == 1
    assert r.status == 200 and r.body == b"partial"
    assert r.abort and r.error.kind == "app" and "after head" in r.error.message
    assert b"after head" not in r.body


def test_W20_no_reference_to_exc_info_is_kept():
    """W20: the shim keeps no reference to exc_info after the call returns."""
    class Marker(Exception):
        pass

    ref = []

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            raise Marker()
        except Marker as exc:
            ref.append(weakref.ref(exc))
            start_response("500 Oops", [], sys.exc_info())
        return [b"x"]

    r = one(app, head())
    assert r.status == 500
    assert ref[0]() is None


def test_W20_reraise_leaves_no_reference_cycle():
    """W20: re-raising exc_info after the head does not tie the exception to
    the start_response frame (exception → traceback → frame → exc_info)."""
    import gc

    class Marker(Exception):
        pass

    ref = []

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"x")
        try:
            raise Marker()
        except Marker:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except Marker as exc:
                ref.append(weakref.ref(exc))
        return [b"y"]

    gc.disable()
    try:
        r = one(app, head())
        assert ref[0]() is None
    finally:
        gc.enable()
    assert r.body == b"xy"


def test_W21_head_deferred_until_first_non_empty_chunk():
    """W21: the app yields b'', changes its mind with exc_info, yields b'err'
    → the client gets 500 with body 'err'."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        try:
            raise RuntimeError("changed my mind")
        except RuntimeError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"err"

    r = one(app, head())
    assert (r.status, r.reason, r.body) == (500, "Oops", b"err")
    assert not r.abort and r.error is None


def test_W22_empty_chunks_never_make_frames():
    """W22: empty chunks are skipped: no head, no empty body frame."""
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b""
        yield b"a"
        yield b""
        yield b""
        yield b"b"
        yield b""

    r = one(app, head())
    assert [f.body for f in r.frames] == [b"a", b"b", b""]
    assert r.frames[0].HasField("head") and r.frames[-1].end


def test_W23_each_chunk_is_sent_before_the_next_is_asked_for():
    """W23: no buffering: a chunk's frame comes out before the app is asked
    for the next chunk (this is what lets 'a, sleep, b' stream)."""
    events = []

    def app(environ, start_response):
        start_response("200 OK", [])
        events.append("yield a")
        yield b"a"
        events.append("yield b")
        yield b"b"

    from bridge_runner import wsgi
    gen = wsgi.Gateway(app).serve([head()])
    first = next(gen)
    assert first.body == b"a" and events == ["yield a"]
    second = next(gen)
    assert second.body == b"b" and events == ["yield a", "yield b"]
    assert next(gen).end


def test_W24_write_queued_in_order_and_first_write_sends_head():
    """W24: write() data goes before iterable data; its first call sends the
    head even for b''; no Content-Length is made up after write()."""
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"")
        write(b"one")
        return [b"two", b"three"]

    r = one(app, head())
    assert r.frames[0].HasField("head") and r.frames[0].body == b""
    assert r.body == b"onetwothree"
    assert r.header("Content-Length") is None


def test_W24_write_sends_before_it_returns_with_a_sender():
    """W24: with a direct sender (the gRPC server's), write() data has left
    the shim when write() returns."""
    sent = []
    during = []

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"one")
        during.append([f.body for f in sent])
        write(b"two")
        during.append([f.body for f in sent])
        return []

    def sender(frame):
        sent.append(frame)
        return True

    out = serve(app, [head()], sender=sender)
    assert during == [[b"one"], [b"one", b"two"]]
    assert len(out) == 1 and out[0].end and not out[0].HasField("head")
    assert sent[0].HasField("head")


def test_W24_write_raises_when_the_client_is_gone():
    """W24/G4: a failed send makes write() raise; no error frame follows."""
    calls = []

    def app(environ, start_response):
        write = start_response("200 OK", [])
        try:
            write(b"x")
        except OSError as exc:
            calls.append(exc)
            raise
        return []

    out = serve(app, [head()], sender=lambda f: False)
    assert len(calls) == 1 and out == []


@pytest.mark.parametrize("data", ["text", bytearray(b"x"), memoryview(b"x"), None])
def test_W24_write_takes_bytes_only(data):
    """W24: write() accepts bytes only."""
    def app(environ, start_response):
        start_response("200 OK", [])(data)
        return []
    assert_500_before_head(one(app, head()), "app")


def test_W24_write_before_start_response_raises():
    """W24: write is unusable before start_response."""
    def app(environ, start_response):
        write = start_response.__self__.write
        write(b"x")
        return []
    assert_500_before_head(one(app, head()), "app")


@pytest.mark.parametrize("result", ["text", b"bytes", bytearray(b"x")])
def test_W25_result_must_not_be_a_string(result):
    """W25: returning str/bytes itself is an app error → 500."""
    r = one(lambda e, s: (s("200 OK", []), result)[1], head())
    assert_500_before_head(r, "protocol")


@pytest.mark.parametrize("item", ["text", bytearray(b"x"), 1, None])
def test_W25_items_must_be_bytes_before_head(item):
    """W25: a non-bytes item before the head → 500."""
    def gen_app(environ, start_response):
        start_response("200 OK", [])
        yield item
    assert_500_before_head(one(gen_app, head()), "protocol")
    assert_500_before_head(one(app_of(body=[b"ok", item]), head()), "protocol")


def test_W25_G3_bad_item_after_head_aborts():
    """W25/G3: a non-bytes item after the head → {error, end, abort}."""
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"fine"
        yield "oops"
    r = one(app, head())
    assert r.status == 200 and r.body == b"fine"
    assert r.abort and r.error.kind == "protocol"


class Boom(Exception):
    pass


def test_W27_G2_exception_in_app_call_is_500_without_detail_in_body():
    """W27/G2: an exception before the head → {error, end} and no head; the
    message and traceback only go in the error (for the log)."""
    def app(environ, start_response):
        raise Boom("secret detail")
    r = one(app, head())
    assert_500_before_head(r, "app")
    assert "secret detail" in r.error.message and "Boom" in r.error.traceback
    assert r.frames[0].body == b""


def test_W27_exception_while_iterating_before_first_chunk():
    """W27: an exception during iteration before any non-empty chunk → 500."""
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b""
        raise Boom("x")
    assert_500_before_head(one(app, head()), "app")


def test_W27_no_start_response_is_500():
    """W27: an iterable used up without start_response → 500."""
    assert_500_before_head(one(lambda e, s: [], head()), "protocol")
    assert_500_before_head(one(lambda e, s: iter([]), head()), "protocol")
    assert_500_before_head(one(lambda e, s: iter([b"x"]), head()), "protocol")


def test_G3_exception_after_head_aborts():
    """G3: an exception after the first chunk → {error, end, abort}."""
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"a"
        raise Boom("late")
    r = one(app, head())
    assert r.body == b"a" and r.abort and r.error.kind == "app"
    assert not r.frames[-1].body


def test_slot_survives_an_app_exception():
    """An app error is a frame, not a failed stream: the next request runs."""
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise Boom()
        start_response("200 OK", [])
        return [b"fine"]
    rs = responses(serve(app, [head(path="/boom"), head(path="/ok")]))
    assert rs[0].error is not None and rs[1].body == b"fine"


def test_W28_G13_overrun_is_truncated_and_iteration_stops(logfile):
    """W28/G13: never more bytes than Content-Length; iteration stops, close
    runs, the overrun is logged, and the response ends cleanly."""
    state = {"asked": 0, "closed": 0}

    class Body:
        def __iter__(self):
            for chunk in (b"abc", b"defg", b"never"):
                state["asked"] += 1
                yield chunk

        def close(self):
            state["closed"] += 1

    r = one(lambda e, s: (s("200 OK", [("Content-Length", "5")]), Body())[1], head())
    assert r.body == b"abcde" and not r.abort
    assert state == {"asked": 2, "closed": 1}
    assert any("longer than its Content-Length" in rec["message"] for rec in logfile())


def test_W28_overrun_list_and_write():
    """W28: the same cap for list bodies and write()."""
    r = one(app_of(headers=[("Content-Length", "3")], body=[b"ab", b"cdef"]), head())
    assert r.body == b"abc" and not r.abort

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "3")])
        write(b"ab")
        write(b"cd")
        write(b"ef")
        return [b"gh"]
    r = one(app, head())
    assert r.body == b"abc" and not r.abort


def test_W28_G13_short_body_aborts(logfile):
    """W28/G13: fewer bytes than Content-Length → {end, abort}."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        yield b"abc"
    r = one(app, head())
    assert r.body == b"abc" and r.abort and r.error is None
    r = one(app_of(headers=[("Content-Length", "10")], body=[b"abc"]), head())
    assert r.body == b"abc" and r.abort
    assert any("short" in rec["message"] for rec in logfile())


@pytest.mark.parametrize("values", [["abc"], ["-1"], ["1.0"], [" 5"], ["\u0665"], ["5", "6"]])
def test_G13_bad_content_length_is_an_app_error(values):
    """G13: not all digits, or different values → app error (500)."""
    app = failing("200 OK", [("Content-Length", v) for v in values])
    assert_500_before_head(one(app, head()), "protocol")


def test_G13_repeated_equal_content_length_sent_once():
    r = one(app_of(headers=[("Content-Length", "2"), ("Content-Length", "2")], body=[b"ok"]), head())
    assert r.header_names().count("content-length") == 1 and r.body == b"ok"


def test_W29_content_length_added_for_single_item():
    """W29: no Content-Length, len(result)==1 → Content-Length of that item."""
    r = one(app_of(body=[b"hello"]), head())
    assert r.header("Content-Length") == "5"

    class One:
        def __len__(self):
            return 1

        def __iter__(self):
            yield b"xyz"

    r = one(lambda e, s: (s("200 OK", []), One())[1], head())
    assert r.header("Content-Length") == "3"


def test_W29_content_length_zero_for_empty_body():
    """W29: an iterable used up before any non-empty chunk → Content-Length: 0."""
    for body in ([], [b""], [b"", b""]):
        r = one(app_of(body=body), head())
        assert r.header("Content-Length") == "0" and len(r.frames) == 1

    def gen(environ, start_response):
        start_response("200 OK", [])
        yield b""
    assert one(gen, head()).header("Content-Length") == "0"


def test_W29_no_content_length_for_several_chunks_or_generators():
    """W29: only a one-item result gets a computed length."""
    r = one(app_of(body=[b"a", b"b"]), head())
    assert r.header("Content-Length") is None and r.body == b"ab" and len(r.frames) == 1

    def gen(environ, start_response):
        start_response("200 OK", [])
        yield b"a"
    assert one(gen, head()).header("Content-Length") is None


def test_W30_head_sends_no_body_and_stops_early():
    """W30: HEAD: the app runs, no body goes out, iteration stops after the
    first chunk, close() is called, an app Content-Length passes through."""
    state = {"asked": 0}

    class Body:
        closed = 0

        def __iter__(self):
            for chunk in (b"", b"abc", b"def"):
                state["asked"] += 1
                yield chunk

        def close(self):
            Body.closed += 1

    r = one(lambda e, s: (s("200 OK", [("Content-Length", "6")]), Body())[1], head("HEAD"))
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "6"
    assert state["asked"] == 2 and Body.closed == 1
    assert len(r.frames) == 1 and not r.abort


def test_W30_W29_head_never_gets_a_made_up_zero_length():
    """W29/W30: HEAD with an empty body gets no Content-Length: 0; with a
    one-item body it gets the same length as GET."""
    assert one(app_of(body=[]), head("HEAD")).header("Content-Length") is None
    r = one(app_of(body=[b"hello"]), head("HEAD"))
    assert r.header("Content-Length") == "5" and r.body == b""

    def app(environ, start_response):
        start_response("200 OK", [])(b"written")
        return []
    r = one(app, head("HEAD"))
    assert r.body == b"" and r.header("Content-Length") is None


@pytest.mark.parametrize("code", [204, 304])
def test_G14_no_body_statuses_are_cleaned(code):
    """G14: 204/304: Content-Length, Transfer-Encoding and Content-Type are
    removed, a body the app produced is dropped, close() still runs."""
    body = []

    class Body:
        closed = 0

        def __iter__(self):
            yield b"dropped"
            body.append("asked again")
            yield b"more"

        def close(self):
            Body.closed += 1

    def app(environ, start_response):
        start_response("%d X" % code, [("Content-Type", "text/plain"), ("Content-Length", "7"),
                                       ("ETag", '"x"')])
        return Body()

    r = one(app, head())
    assert r.status == code and r.body == b""
    assert r.header_names() == ["etag"]
    assert body == [] and Body.closed == 1
    r = one(app_of(status="%d X" % code, body=[b""]), head())
    assert r.header_names() == []


def test_big_chunks_are_split_at_1MiB():
    """docs/design.md "The wire contract": frames stay at or below 1 MiB (Go's 4 MiB message limit)."""
    from bridge_runner.wsgi import MAX_CHUNK
    data = bytes(range(256)) * (MAX_CHUNK * 2 // 256 + 10)
    r = one(app_of(body=[data]), head())
    assert r.body == data and all(len(f.body) <= MAX_CHUNK for f in r.frames)
    assert len(r.frames) == 3 and r.header("Content-Length") == str(len(data))

    def gen(environ, start_response):
        start_response("200 OK", [])
        yield data
    r = one(gen, head())
    assert r.body == data and all(len(f.body) <= MAX_CHUNK for f in r.frames)


def test_W33_single_thread_never_runs_the_app_twice_at_once():
    """W33: with threads=1 (multithread False) two slots never call the app
    at the same time."""
    from bridge_runner import wsgi
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    entered = threading.Event()

    def app(environ, start_response):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        entered.set()
        threading.Event().wait(0.2)
        with lock:
            state["now"] -= 1
        start_response("200 OK", [])
        return [b"x"]

    for threads, want in ((1, 1), (2, 2)):
        state.update(now=0, max=0)
        gw = wsgi.Gateway(app, threads=threads)
        ts = [threading.Thread(target=lambda: list(gw.serve([head(), head()])))
              for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
            assert not t.is_alive()
        assert state["max"] == want


def test_checked_headers_are_cached_but_never_shared():
    """start_response's checks are cached per distinct status and header
    list (headers.py); a cached result is a fresh list each time (W29 adds
    Content-Length to it), and a bad list is still rejected after a good
    one that looks alike."""
    from bridge_runner.headers import ProtocolError, check_headers, check_status

    hdrs = [("Content-Type", "text/plain"), ("X-A", "1")]
    first, _ = check_headers(list(hdrs))
    first.append((b"Content-Length", b"0"))
    second, length = check_headers(list(hdrs))
    assert second == [(b"Content-Type", b"text/plain"), (b"X-A", b"1")] and length is None
    assert check_headers([("Content-Length", "5")]) == ([(b"Content-Length", b"5")], 5)
    assert check_headers([("Content-Length", "5")])[1] == 5
    with pytest.raises(ProtocolError):
        check_headers([("X-A", "1\n")])
    with pytest.raises(ProtocolError):
        check_headers([["Content-Type", "text/plain"]])
    with pytest.raises(ProtocolError):
        check_headers([("Content-Type", "text/plain"), ("X-A", 1)])
    assert check_status("200 OK") == check_status("200 OK") == (200, "OK")
    with pytest.raises(ProtocolError):
        check_status("200 OK\n")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x"]

    for _ in range(2):
        r = one(app, head())
        assert r.headers == [("Content-Type", "text/plain"), ("Content-Length", "1")]
