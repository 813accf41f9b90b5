"""close() exactly once on every path (W26, G4, G5)."""
import gc
import threading

from bridge_runner import wsgi
from helpers import Closing, head, one, responses, serve


class Body:
    """A response body that counts close() calls and can misbehave."""

    def __init__(self, chunks=(b"a", b"b"), fail_at=None, endless=False):
        self.chunks = chunks
        self.fail_at = fail_at
        self.endless = endless
        self.closed = 0
        self.asked = 0

    def __iter__(self):
        i = 0
        while True:
            if self.fail_at is not None and i == self.fail_at:
                raise RuntimeError("fail at %d" % i)
            if not self.endless and i >= len(self.chunks):
                return
            if i >= 10000:  # "endless", but a broken shim must fail, not hang
                raise AssertionError("the shim kept iterating")
            self.asked += 1
            yield self.chunks[i % len(self.chunks)]
            i += 1

    def close(self):
        self.closed += 1


def app_returning(body, headers=()):
    def app(environ, start_response):
        start_response("200 OK", list(headers))
        return body
    return app


def test_W26_close_after_normal_end():
    body = Body()
    r = one(app_returning(body), head())
    assert r.body == b"ab" and body.closed == 1


def test_W26_close_for_list_subclass_and_after_error_before_head():
    """W26: close() for a list-like result, and when iteration fails at once."""
    body = Closing([b"x"])
    one(app_returning(body), head())
    assert body.closed == 1
    body = Body(fail_at=0)
    r = one(app_returning(body), head())
    assert r.error is not None and body.closed == 1


def test_W26_G5_close_after_exception_during_iteration():
    body = Body(fail_at=1)
    r = one(app_returning(body), head())
    assert r.abort and body.closed == 1


def test_W26_close_when_close_itself_fails_is_logged(logfile):
    class Bad(Body):
        def close(self):
            super().close()
            raise ValueError("close broke")

    body = Bad()
    rs = responses(serve(app_returning(body), [head(), head()]))
    assert body.closed == 2 and len(rs) == 2
    assert sum("close broke" in rec["message"] for rec in logfile()) == 2


def test_W26_G5_close_after_overrun_and_head_stop():
    body = Body(chunks=(b"abcdef",), endless=True)
    r = one(app_returning(body, [("Content-Length", "3")]), head())
    assert r.body == b"abc" and body.closed == 1 and body.asked == 1
    body = Body(endless=True)
    one(app_returning(body), head("HEAD"))
    assert body.closed == 1 and body.asked == 1


def test_W26_close_when_start_response_was_never_called():
    body = Closing([b"x"])
    one(lambda e, s: body, head())
    assert body.closed == 1


def test_G4_cancel_during_iteration_closes_once(logfile):
    """G4: the client goes away (the slot is cancelled) while the app is
    streaming: iteration stops at the next chunk, close() runs once, no
    error frame, logged at info."""
    body = Body(endless=True)
    slot = wsgi.Slot([head(rid="gone")])
    gen = wsgi.Gateway(app_returning(body)).serve(None, slot=slot)
    assert next(gen).body == b"a"
    assert next(gen).body == b"b"
    slot.cancel()
    assert list(gen) == []
    assert body.closed == 1 and body.asked == 3
    recs = [r for r in logfile() if r["message"] == "request cancelled"]
    assert len(recs) == 1 and recs[0]["level"] == "info" and recs[0]["request_id"] == "gone"


def test_G4_dropped_stream_generator_closes_once():
    """G4: gRPC drops the response generator of a cancelled stream; its
    finalization (GeneratorExit at the yield) closes the app body once."""
    body = Body(endless=True)
    gen = wsgi.Gateway(app_returning(body)).serve([head()])
    next(gen)
    next(gen)
    del gen
    gc.collect()
    assert body.closed == 1


def test_G4_explicit_generator_close_closes_once():
    body = Body(endless=True)
    gen = wsgi.Gateway(app_returning(body)).serve([head()])
    next(gen)
    gen.close()
    gen.close()
    assert body.closed == 1


def test_G4_cancel_from_another_thread_while_the_app_sleeps():
    """G4 test hint: the client reads one chunk of an endless generator and
    disconnects → close counter is 1 within 1 s."""
    body = Body(endless=True)
    slot = wsgi.Slot([head()])
    gen = wsgi.Gateway(app_returning(body)).serve(None, slot=slot)
    assert next(gen).body == b"a"
    threading.Timer(0.05, slot.cancel).start()
    done = threading.Event()

    def consume():
        for _ in gen:
            threading.Event().wait(0.01)
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert done.wait(1.0)
    assert body.closed == 1


def test_G5_semaphore_and_in_flight_released_on_every_path():
    """G5/W33: whatever happens, the app thread and in-flight count come back."""
    gw = wsgi.Gateway(app_returning(Body(endless=True)))
    gen = gw.serve([head()])
    next(gen)
    assert gw.in_flight == 1
    gen.close()
    assert gw.in_flight == 0
    assert gw._app_threads.acquire(blocking=False)
    gw._app_threads.release()


def test_G25_drain_waits_for_in_flight_then_slots_end():
    """G25: drain() stops taking requests; in-flight ones finish first."""
    gw = wsgi.Gateway(app_returning(Body()))
    gen = gw.serve([head(), head()])
    first = next(gen)
    assert first.body == b"a"
    waiter = []
    t = threading.Thread(target=lambda: waiter.append(gw.drain(5)))
    t.start()
    t.join(0.1)
    assert t.is_alive()  # still waiting for the request in flight
    rest = list(gen)     # the request finishes; the second head is not taken
    t.join(5)
    assert waiter == [True]
    assert [f.body for f in rest] == [b"b", b""] and rest[-1].end


def test_running_lists_requests_until_the_app_lets_go():
    """Describe's `running`: a request is listed from the app call until its
    body is closed, cancelled or not; a finished one is gone."""
    seen = []

    def app(environ, start_response):
        seen.append(gw.running())
        start_response("200 OK", [])
        return Body(endless=environ["bridge.request_id"] == "a")

    gw = wsgi.Gateway(app)
    assert gw.running() == []
    slot = wsgi.Slot([head(rid="a")])
    gen = gw.serve(None, slot=slot)
    next(gen)
    assert seen == [["a"]] and gw.running() == ["a"]
    slot.cancel()
    assert gw.running() == ["a"]  # cancelled, but the app has not returned
    assert list(gen) == []
    assert gw.running() == []
    r = responses(gw.serve([head(rid="b")]))
    assert r[0].body == b"ab" and seen[-1] == ["b"] and gw.running() == []
