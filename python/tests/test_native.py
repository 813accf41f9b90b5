"""The native transport (native.py) at the HTTP/2 level, with h2 as the
client: what grpcio's and grpc-go's clients never do on purpose (a tiny
send window, garbage, a bad preface, PING) must not break a runner."""
import socket
import struct

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from bridge_runner.native import NativeServer
from bridge_runner.runner_pb2 import RequestFrame, ResponseFrame
from bridge_runner.wsgi import Gateway

from helpers import head

BIG = 200_000


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/big":
        return [bytes(range(256)) * (BIG // 256) + b"x" * (BIG % 256)]
    return [b"Hello, World!"]


@pytest.fixture(params=[1, 2])
def server(request, tmp_path, logfile):
    threads = request.param
    srv = NativeServer(Gateway(app, threads=threads), "test:app", threads)
    srv.listen(str(tmp_path))
    srv.start()
    yield srv
    srv.stop()


class Client:
    """A gRPC client on h2, driven by hand."""

    def __init__(self, path, window=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        if window is not None:
            self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.data = {}
        self.ended = set()
        self.trailers = {}
        self.resets = {}
        self.pings = 0
        self.acks = True

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def open(self, method="/bridge.v1.Runner/Slot"):
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", method),
                                   (":authority", "runner"), ("content-type", "application/grpc"),
                                   ("te", "trailers")])
        self.data[sid] = b""
        self.flush()
        return sid

    def send(self, sid, msg, end=False):
        self.h2.send_data(sid, struct.pack(">BI", 0, len(msg)) + msg, end_stream=end)
        self.flush()

    def turn(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed")
        for ev in self.h2.receive_data(chunk):
            if isinstance(ev, h2.events.DataReceived):
                self.data[ev.stream_id] += ev.data
                if self.acks:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                self.trailers[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.ResponseReceived):
                headers = dict(ev.headers)
                if b"grpc-status" in headers:
                    self.trailers[ev.stream_id] = headers
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.PingAckReceived):
                self.pings += 1
        self.flush()

    def until(self, check, turns=5000):
        for _ in range(turns):
            if check():
                return
            self.turn()
        assert check()

    def frames(self, sid):
        """The ResponseFrames received on `sid` so far."""
        buf, out = self.data[sid], []
        while len(buf) >= 5:
            _, n = struct.unpack(">BI", buf[:5])
            if len(buf) < 5 + n:
                break
            out.append(ResponseFrame.FromString(buf[5:5 + n]))
            buf = buf[5 + n:]
        return out

    def exchange(self, sid, path="/hello"):
        self.send(sid, head(path=path, rid=path).SerializeToString())
        self.until(lambda: any(f.end for f in self.frames(sid)))
        return b"".join(f.body for f in self.frames(sid))


def test_requests_and_trailers_on_a_slot(server):
    c = Client(server.path)
    sid = c.open()
    assert c.exchange(sid) == b"Hello, World!"
    c.data[sid] = b""
    assert c.exchange(sid) == b"Hello, World!"
    c.h2.end_stream(sid)
    c.flush()
    c.until(lambda: sid in c.ended)
    assert c.trailers[sid][b"grpc-status"] == b"0"


def test_a_short_send_window_waits_for_window_updates(server):
    """A client window of 1,000 bytes: the 200 kB response goes out in
    pieces as the client acknowledges them, byte for byte intact."""
    c = Client(server.path, window=1000)
    c.until(lambda: c.h2.remote_settings.initial_window_size and
            c.h2.local_settings.initial_window_size == 1000)
    sid = c.open()
    body = c.exchange(sid, "/big")
    assert len(body) == BIG and body == app({"PATH_INFO": "/big"}, lambda *a: None)[0]


def test_garbage_resets_the_stream_not_the_runner(server, logfile):
    c = Client(server.path)
    bad = c.open()
    c.send(bad, b"\xff\xff\xff\xff")
    c.until(lambda: bad in c.resets)
    good = c.open()
    assert c.exchange(good) == b"Hello, World!"
    assert any("not a RequestFrame" in r["message"] for r in logfile())


def test_unknown_method_ping_and_a_bad_preface(server):
    c = Client(server.path)
    sid = c.open("/no.Such/Method")
    c.h2.end_stream(sid)
    c.h2.ping(b"12345678")
    c.flush()
    c.until(lambda: sid in c.trailers and c.pings == 1)
    assert c.trailers[sid][b"grpc-status"] == b"12"
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bad.settimeout(5)
    bad.connect(server.path)
    bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    while True:  # the runner hangs up on it...
        try:
            if not bad.recv(4096):
                break
        except ConnectionResetError:
            break
    # ...and still serves everyone else.
    assert c.exchange(c.open()) == b"Hello, World!"
