"""The real shim process: handshake, gRPC services, Slot streams, shutdown,
start-up failures (CONTRACT.md; W23, W24, G4, G7, G24, G25).

Every wait is bounded; every process started here is killed by its own pid.
"""
import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time

import grpc
import h2
import pytest

from bridge_runner.runner_pb2 import (DescribeRequest, DescribeResponse, RequestFrame,
                                      ResponseFrame)
from helpers import body, end, head

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")
WAIT = 10  # seconds: the upper bound of every wait in this file


class Shim:
    """One shim process, its stderr log lines and a gRPC channel to it."""

    def __init__(self, tmp_path, app="fixture_app:application", cwd=APPS, env=None, args=()):
        sock_dir = tmp_path / "sock"
        sock_dir.mkdir(exist_ok=True)
        full_env = dict(os.environ)
        full_env.update(BRIDGE_PLUGIN="runner-v1", PLUGIN_PROTOCOL_VERSIONS="1",
                        PLUGIN_UNIX_SOCKET_DIR=str(sock_dir), PYTHONPATH=PYTHON_DIR,
                        BRIDGE_WORKER="0")
        full_env.pop("BRIDGE_THREADS", None)
        for k, v in (env or {}).items():  # None unsets
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge_runner", "--app", app, *args],
            cwd=str(cwd), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.channel = None

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def records(self):
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line, "raw": True})
        return out

    def handshake(self):
        r, _, _ = select.select([self.proc.stdout], [], [], WAIT)
        assert r, "no handshake within %ds; stderr: %s" % (WAIT, self.lines)
        line = self.proc.stdout.readline().decode()
        assert line.endswith("\n")
        parts = line.rstrip("\n").split("|")
        assert parts[0] == "1" and parts[1] == "1" and parts[2] == "unix" and parts[4] == "grpc", line
        self.path = parts[3]
        self.channel = grpc.insecure_channel("unix:" + self.path)
        grpc.channel_ready_future(self.channel).result(timeout=WAIT)
        return parts

    def describe(self):
        call = self.channel.unary_unary("/bridge.v1.Runner/Describe",
                                        request_serializer=DescribeRequest.SerializeToString,
                                        response_deserializer=DescribeResponse.FromString)
        return call(DescribeRequest(), timeout=WAIT)

    def slot(self):
        return Slot(self.channel)

    def wait(self, timeout=WAIT):
        return self.proc.wait(timeout)

    def stop(self):
        if self.channel is not None:
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self._reader.join(WAIT)
        self.proc.stdout.close()
        self.proc.stderr.close()


class Slot:
    """A Slot stream driven by hand: send() frames, recv() frames."""

    def __init__(self, channel):
        self.q = queue.Queue()
        call = channel.stream_stream("/bridge.v1.Runner/Slot",
                                     request_serializer=RequestFrame.SerializeToString,
                                     response_deserializer=ResponseFrame.FromString)
        self.call = call(iter(self.q.get, None), timeout=30)

    def send(self, *frames):
        for f in frames:
            self.q.put(f)

    def recv(self):
        return next(self.call)

    def response(self):
        frames = [self.recv()]
        while not frames[-1].end:
            frames.append(self.recv())
        return frames

    def get(self, path, rid="r", query=""):
        self.send(head(path=path, rid=rid, extra=[("QUERY_STRING", query)]))
        frames = self.response()
        return b"".join(f.body for f in frames), frames

    def close(self):
        self.q.put(None)


@pytest.fixture
def server():
    """The gRPC server the process tests run (BRIDGE_PY_SERVER); one since
    grpcio's servers were removed (python/README.md, "gRPC server")."""
    return "native"


@pytest.fixture
def shim(tmp_path, server):
    started = []

    def start(env=None, **kw):
        full = {"BRIDGE_PY_SERVER": server}
        full.update(env or {})
        s = Shim(tmp_path, env=full, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_handshake_describe_and_services(shim, server):
    """CONTRACT start-up and services: the handshake line is the first and
    only thing on stdout although the app printed at import (G7)."""
    s = shim(args=("--threads", "3"))
    s.handshake()
    d = s.describe()
    assert (d.language, d.interface, d.app, d.threads, d.slots, d.pid) == (
        "python", "wsgi/1.0", "fixture_app:application", 3, 3, s.proc.pid)
    assert d.language_version == "%d.%d.%d" % sys.version_info[:3]
    assert d.server == {"native": "bridge-wsgi/0.1 h2/%s" % h2.__version__,
                        }[server]
    health = s.channel.unary_unary("/grpc.health.v1.Health/Check")
    assert health(b"\x0a\x06plugin", timeout=WAIT) == b"\x08\x01"
    stdio = s.channel.unary_stream("/plugin.GRPCStdio/StreamStdio")
    assert list(stdio(b"", timeout=WAIT)) == []
    shutdown = s.channel.unary_unary("/plugin.GRPCController/Shutdown")
    assert shutdown(b"", timeout=WAIT) == b""
    assert s.wait() == 0
    assert s.proc.stdout.read() == b""
    recs = s.records()
    assert any(r.get("stream") == "stdout" and r["message"] == "HTTP/1.1 200 OK" for r in recs)
    assert all(not r.get("raw") for r in recs), recs


def test_requests_on_one_slot(shim):
    """CONTRACT Slots: requests one after another on one stream; hello world
    is one frame each way; a streamed POST; an app error is a frame and the
    slot goes on; prints stay off stdout (G7, G8)."""
    s = shim()
    s.handshake()
    slot = s.slot()
    text, frames = slot.get("/hello", rid="one")
    assert text == b"Hello, World!" and len(frames) == 1
    assert frames[0].head.status == 200 and frames[0].end
    text, frames = slot.get("/hello", rid="two")
    assert text == b"Hello, World!" and len(frames) == 1

    # A POST whose body arrives in frames while the response streams back.
    slot.send(head("POST", path="/echo", body=b"abcdef", end=False, length=-1, rid="post"))
    first = slot.recv()
    assert first.head.status == 200 and first.body == b"abcd"
    slot.send(body(b"ghij"))
    assert slot.recv().body == b"efgh"
    slot.send(body(b"k"), end())
    rest = slot.response()
    assert b"".join(f.body for f in rest) == b"ijk" and rest[-1].end and not rest[-1].abort

    slot.send(head(path="/boom", rid="boom"))
    err = slot.response()
    assert len(err) == 1 and not err[0].HasField("head") and err[0].end
    assert err[0].error.kind == "app" and "secret detail" in err[0].error.message
    assert "ValueError" in err[0].error.traceback

    text, _ = slot.get("/print", rid="printer")
    assert text == b"printed"
    text, _ = slot.get("/rawprint", rid="raw")
    assert text == b"raw"
    text, _ = slot.get("/hello", rid="after")
    assert text == b"Hello, World!"
    slot.close()

    s.proc.send_signal(signal.SIGTERM)
    assert s.wait() == 0
    assert s.proc.stdout.read() == b""  # nothing after the handshake line
    raw = [r["message"] for r in s.records() if r.get("raw")]
    assert raw == ["raw write on fd 1", "child process output"]
    recs = [r for r in s.records() if r.get("request_id") == "printer"]
    streams = sorted((r["stream"], r["message"]) for r in recs if "stream" in r)
    assert streams == [("errors", "a line on wsgi.errors"), ("stderr", "a line on stderr"),
                       ("stdout", "HTTP/1.1 200 OK"), ("stdout", "not a response")]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_cancel_closes_the_body_once(shim, threads):
    """G4: the client reads a chunk of an endless body and goes away (stream
    cancel); close() runs once, within 1 s, and a new slot works (with one
    thread, the new slot waits until the cancelled request is closed)."""
    s = shim(env={"BRIDGE_THREADS": threads})
    s.handshake()
    a = s.slot()
    a.send(head(path="/endless", extra=[("QUERY_STRING", "k1")], rid="endless"))
    assert a.recv().body == b"tick\n"
    assert a.recv().body == b"tick\n"
    a.call.cancel()
    b = s.slot()
    deadline = time.monotonic() + 1.0
    while True:
        text, _ = b.get("/closes", rid="poll", query="k1")
        if text != b"0" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert text == b"1"
    time.sleep(0.2)
    assert b.get("/closes", rid="poll", query="k1")[0] == b"1"
    b.close()
    assert any(r["message"] == "request cancelled" and r.get("request_id") == "endless"
               for r in s.records())



def _until(check, what):
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


def test_describe_running_keeps_a_cancelled_request_until_the_app_returns(shim, server):
    """proto DescribeResponse.running: the id of a request inside the app is
    listed; cancelling its stream while the app sleeps does not remove it;
    it goes when the app returns. (With one thread the app runs on the
    loop thread, which answers Describe only after it: see
    test_native_runs_the_app_on_the_loop_with_one_thread.)"""
    s = shim(env={"BRIDGE_THREADS": "2"})
    s.handshake()
    assert list(s.describe().running) == []
    a = s.slot()
    a.send(head(path="/slow", extra=[("QUERY_STRING", "1.5")], rid="sleepy"))
    _until(lambda: list(s.describe().running) == ["sleepy"], "the request to start")
    a.call.cancel()
    time.sleep(0.2)
    assert list(s.describe().running) == ["sleepy"]  # the app is still in time.sleep
    _until(lambda: not s.describe().running, "the cancelled request to leave")
    b = s.slot()
    assert b.get("/hello", rid="next")[0] == b"Hello, World!"
    b.close()


def test_sigusr1_logs_every_thread_while_the_app_runs(shim):
    """bridge sends SIGUSR1 to a runner that keeps a cancelled request, just
    after a Describe: every thread's stack is logged (the app's sleeping
    frame among them) and the process carries on. Repeated, because
    faulthandler's dump crashed the process this way now and then."""
    s = shim(env={"BRIDGE_THREADS": "2"})
    s.handshake()
    a = s.slot()
    a.send(head(path="/slow", extra=[("QUERY_STRING", "1.5")], rid="stuck"))
    _until(lambda: list(s.describe().running) == ["stuck"], "the request to start")
    for _ in range(20):
        assert list(s.describe().running) == ["stuck"]
        s.proc.send_signal(signal.SIGUSR1)

    def dumps():
        return [r for r in s.records() if r["message"] == "stack dump (SIGUSR1)"]

    # Signals that arrive before the handler runs count once: at least one
    # dump, each with the app's frame in a slot thread and the main thread.
    _until(lambda: any("in application" in r["traceback"] for r in dumps()), "a stack dump")
    app = [r for r in dumps() if "in application" in r["traceback"]]
    assert all(r["thread"].startswith(("bridge-slot", "bridge-app")) and r["level"] == "info" for r in app)
    assert 'fixture_app.py", line ' in app[0]["traceback"]
    assert "time.sleep" in app[0]["traceback"]  # the source line, looked up
    _until(lambda: any(r["thread"] == "MainThread" for r in dumps()), "the main thread's stack")
    main = [r["traceback"] for r in dumps() if r["thread"] == "MainThread"]
    assert all("in main" in t for t in main)
    # A signal handled inside the handler of the one before shows it, the
    # others show where the main thread was.
    assert any("on_sigusr1" not in t for t in main)
    assert s.proc.poll() is None
    frames = a.response()
    assert b"".join(f.body for f in frames) == b"slow done" and not frames[-1].abort
    a.close()


def test_streaming_is_not_buffered(shim):
    """W23/W24: a chunk (or write()) reaches the client while the app is still
    busy producing the rest."""
    s = shim()
    s.handshake()
    slot = s.slot()
    for path, first, second in (("/stream", b"a", b"b"), ("/write", b"first ", b"second")):
        t0 = time.monotonic()
        slot.send(head(path=path, extra=[("QUERY_STRING", "1.5")]))
        f = slot.recv()
        t1 = time.monotonic()
        assert f.body == first and t1 - t0 < 1.0, (path, t1 - t0)
        rest = slot.response()
        assert b"".join(x.body for x in rest) == second
    slot.close()


def test_write_file_and_threads(shim):
    """W24: several write() calls arrive in order, before the iterable's
    data; G23: a file_wrapper response is a File frame, closed once, when
    the slot's next frame arrives."""
    s = shim()
    s.handshake()
    slot = s.slot()
    text, frames = slot.get("/writes")
    assert text == b"abcd" and frames[-1].end and not frames[-1].abort
    assert [f.body for f in frames if f.body][0] == b"a"
    slot.send(head(path="/file"))
    frames = slot.response()
    assert len(frames) == 1 and frames[0].head.status == 200 and frames[0].end
    f = frames[0].file
    assert (f.path, f.offset, f.length) == (os.path.join(APPS, "fixture_app.py"), 0, -1)
    assert slot.get("/closes", query="file")[0] == b"1"
    assert slot.get("/closes", query="file")[0] == b"1"
    slot.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_native_runs_the_app_on_the_loop_with_one_thread(shim, server, threads):
    """BRIDGE_PY_SERVER=native: with one thread the app runs on the thread
    that reads the socket, a streamed body too (its frames are read by the
    app's own reads); with more, app threads (bridge-app-N) run them and the
    loop thread answers a Describe while the app is busy."""
    s = shim(env={"BRIDGE_THREADS": str(threads)})
    s.handshake()
    slot = s.slot()
    want = b"bridge-loop" if threads == 1 else b"bridge-app-"
    assert slot.get("/thread")[0].startswith(want)
    slot.send(head("POST", path="/thread", body=b"x", end=False, length=2))
    slot.send(body(b"y", end=True))
    assert b"".join(f.body for f in slot.response()).startswith(want)
    slot.send(head(path="/slow", extra=[("QUERY_STRING", "1.0")], rid="busy"))
    time.sleep(0.3)
    t0 = time.monotonic()
    running = list(s.describe().running)
    if threads == 1:
        assert time.monotonic() - t0 > 0.4 and running == []
    else:
        assert time.monotonic() - t0 < 0.4 and running == ["busy"]
    assert b"".join(f.body for f in slot.response()) == b"slow done"
    slot.close()


@pytest.mark.parametrize("threads,want", [("1", "native"), ("3", "native")])
def test_default_server_whatever_the_threads(shim, server, threads, want):
    """Without BRIDGE_PY_SERVER: the native server whatever the threads
    (python/README.md, "gRPC server"); any other value is refused, the
    removed grpcio servers' names too."""
    s = shim(env={"BRIDGE_PY_SERVER": "", "BRIDGE_THREADS": threads})
    s.handshake()
    slot = s.slot()
    assert slot.get("/hello")[0] == b"Hello, World!"
    slot.close()
    _until(lambda: any(r["message"].startswith("serving ") for r in s.records()), "the log line")
    serving = [r for r in s.records() if r["message"].startswith("serving ")]
    assert serving[0]["server"] == want
    for name in ("twisted", "aio"):
        bad = shim(env={"BRIDGE_PY_SERVER": name})
        assert bad.wait() == 1
        bad._reader.join(WAIT)
        assert any("BRIDGE_PY_SERVER=%r: want native" % name in r["message"] for r in bad.records())


def test_sigterm_lets_in_flight_requests_finish(shim):
    """G25: SIGTERM: the request in flight completes, then the process exits 0."""
    s = shim()
    s.handshake()
    slot = s.slot()
    slot.send(head(path="/slow", extra=[("QUERY_STRING", "0.5")]))
    time.sleep(0.1)
    s.proc.send_signal(signal.SIGTERM)
    frames = slot.response()
    assert b"".join(f.body for f in frames) == b"slow done" and not frames[-1].abort
    assert s.wait() == 0


def test_bridge_grace_bounds_the_wait_for_in_flight_requests(shim):
    """BRIDGE_GRACE, a Go duration: after it, SIGTERM stops waiting."""
    s = shim(env={"BRIDGE_GRACE": "300ms"})
    s.handshake()
    slot = s.slot()
    slot.send(head(path="/slow", extra=[("QUERY_STRING", "1")]))
    time.sleep(0.1)
    s.proc.send_signal(signal.SIGTERM)
    assert s.wait() == 0
    s._reader.join(WAIT)
    assert any("still running after 0.3s" in r["message"] for r in s.records())


BROKEN = {
    "missing_module": ("nosuchmodule:application", None,
                       "cannot import module 'nosuchmodule': ModuleNotFoundError"),
    "syntax_error": ("broken:application", "def application(:\n",
                     "cannot import module 'broken': SyntaxError"),
    "raises": ("broken:application", "raise RuntimeError('no database')\n",
               "cannot import module 'broken': RuntimeError: no database"),
    "missing_attribute": ("broken:foo", "def application(e, s): pass\n",
                          "module 'broken' has no attribute 'foo'"),
    "not_callable": ("broken:application", "application = 42\n",
                     "broken:application is not callable (it is a int)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_G24_app_that_does_not_load_exits_1_before_the_handshake(shim, tmp_path, case):
    """G24: a load failure is one error log line (with the traceback when there
    is one) and exit code 1, with nothing on stdout."""
    spec, source, message = BROKEN[case]
    appdir = tmp_path / "app"
    appdir.mkdir()
    if source is not None:
        (appdir / "broken.py").write_text(source)
    s = shim(app=spec, cwd=appdir)
    assert s.wait() == 1
    assert s.proc.stdout.read() == b""
    s._reader.join(WAIT)
    errors = [r for r in s.records() if r.get("level") == "error"]
    assert len(errors) == 1 and errors[0]["message"].startswith(message), errors
    if case in ("missing_module", "syntax_error", "raises"):
        assert "Traceback" in errors[0]["traceback"]


NOT_BRIDGE = {
    "no_cookie": ({"BRIDGE_PLUGIN": None},
                  "bridge_runner is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v1"),
    "wrong_cookie": ({"BRIDGE_PLUGIN": "runner-v2"},
                     "bridge_runner is a bridge runner plugin, started by bridge; BRIDGE_PLUGIN is not runner-v1"),
    "other_versions": ({"PLUGIN_PROTOCOL_VERSIONS": "2,3"},
                       "PLUGIN_PROTOCOL_VERSIONS is 2,3: this runner speaks protocol version 1 only"),
    "no_socket_dir": ({"PLUGIN_UNIX_SOCKET_DIR": None},
                      "PLUGIN_UNIX_SOCKET_DIR is not set: bridge names the directory for the runner's socket"),
    "bad_grace": ({"BRIDGE_GRACE": "30"}, "BRIDGE_GRACE=30 is not a duration such as 30s, 1m30s or 500ms"),
    "negative_grace": ({"BRIDGE_GRACE": "-1s"}, "BRIDGE_GRACE=-1s is not a duration such as 30s, 1m30s or 500ms"),
}


@pytest.mark.parametrize("case", sorted(NOT_BRIDGE))
def test_refuses_an_environment_bridge_did_not_make(shim, case):
    """CONTRACT "Start-up": cookie, protocol versions, socket directory and
    BRIDGE_GRACE are checked first, in the same words as the other shims:
    one error line, exit 1, nothing on stdout."""
    env, message = NOT_BRIDGE[case]
    s = shim(env=env)
    assert s.wait() == 1
    assert s.proc.stdout.read() == b""
    s._reader.join(WAIT)
    assert [(r.get("level"), r["message"]) for r in s.records()] == [("error", message)]


def test_versions_including_1_and_grace_in_go_format_are_accepted(shim):
    s = shim(env={"PLUGIN_PROTOCOL_VERSIONS": "3,1", "BRIDGE_GRACE": "1m30s"})
    s.handshake()


def test_validate_flag_wraps_the_app(shim):
    """--validate runs the app inside wsgiref.validate.validator (W34): a
    clean request passes, and an app-side violation is a 500 error frame."""
    s = shim(args=("--validate",))
    s.handshake()
    slot = s.slot()
    text, frames = slot.get("/hello")
    assert text == b"Hello, World!" and frames[0].head.status == 200
    slot.send(head(path="/nothing-here"))
    frames = slot.response()
    assert frames[0].head.status == 404  # has a Content-Type: validator is happy
    slot.send(head(path="/no-content-type"))
    frames = slot.response()
    assert len(frames) == 1 and not frames[0].HasField("head")
    assert "Content-Type" in frames[0].error.message
    slot.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_pipelined_slots_wait_their_turn(shim, server, threads):
    """bridge --pipeline: more Slot streams (BRIDGE_SLOTS) than app threads.
    Every request is served, and the app never runs more than `threads` at
    once (W33); a request cancelled while it waits never reaches the app."""
    s = shim(env={"BRIDGE_THREADS": str(threads), "BRIDGE_SLOTS": "5"})
    s.handshake()
    assert (s.describe().threads, s.describe().slots) == (threads, 5)
    slots = [s.slot() for _ in range(4)]
    for i, sl in enumerate(slots):
        sl.send(head(path="/turn", rid="t%d" % i, extra=[("QUERY_STRING", "turn")]))
    most = [int(b"".join(f.body for f in sl.response())) for sl in slots]
    assert max(most) == threads, most
    # One request holds the only thread; the next waits, is cancelled, and
    # must never run.
    if threads == 1:
        busy, waiting = slots[0], slots[1]
        busy.send(head(path="/slow", rid="busy", extra=[("QUERY_STRING", "0.3")]))
        time.sleep(0.1)
        waiting.send(head(path="/turn", rid="gone", extra=[("QUERY_STRING", "gone")]))
        time.sleep(0.05)
        waiting.call.cancel()
        assert b"".join(f.body for f in busy.response()) == b"slow done"
        time.sleep(0.1)
        assert slots[2].get("/seen", rid="seen", query="gone")[0] == b"0"
    for sl in slots:
        sl.close()


def test_bridge_retire_ends_with_retire_and_exits_0(shim):
    """environ['bridge.retire'] (CONTRACT "Slots", retire): the response's
    end frame carries retire; a request pipelined behind it (waiting for the
    one app thread) still completes; then the process exits 0."""
    s = shim(env={"BRIDGE_THREADS": "1", "BRIDGE_SLOTS": "3"})
    s.handshake()
    a, b, idle = s.slot(), s.slot(), s.slot()
    assert idle.get("/hello", rid="before")[1][-1].retire is False
    a.send(head(path="/retire", rid="retiring", extra=[("QUERY_STRING", "0.3")]))
    time.sleep(0.1)
    b.send(head(path="/hello", rid="behind"))
    frames = a.response()
    assert b"".join(f.body for f in frames) == b"bye"
    assert frames[-1].end and frames[-1].retire and not frames[-1].abort
    assert all(not f.retire for f in frames[:-1])
    frames = b.response()
    assert b"".join(f.body for f in frames) == b"Hello, World!" and not frames[-1].retire
    assert s.wait() == 0
    s._reader.join(WAIT)
    msgs = [(r.get("request_id"), r["message"]) for r in s.records()]
    assert ("retiring", "bridge.retire: the worker exits after this request") in msgs
