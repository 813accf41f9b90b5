"""bridge's own gRPC server for the runner: HTTP/2 on the app's thread.

grpcio's servers put a poller thread between the socket and the app: every
message wakes it and then the thread that runs the app, two thread switches
a message on machines where one costs 10-30 us (docs/design.md,
"Performance budget"). This server reads the socket on the thread that runs
the app, the way the Perl runner does:

- `h2` (python3-h2) does the connection: the preface, SETTINGS, HPACK
  headers and trailers, PING, GOAWAY, RST_STREAM, WINDOW_UPDATE;
- the frames that carry the work, DATA on an open stream, skip it both ways:
  they are parsed and written here, and the flow-control windows that `h2`
  would keep for them are kept here too (`_Conn._frames`, `_Conn.send`).

With one app thread (bridge's default) the app runs on the loop thread
itself: a request is read, run and answered with no thread hand-off, and
while the app runs, the loop turns only when the app reads its body or
writes its response (that is also when Describe is answered). With
`threads` > 1 the loop thread only does I/O and `threads` app threads
serve the requests, in arrival order: each takes a Slot stream with a
request waiting, runs it, writes the response itself (under the connection's
lock) and takes the next. Slots past the threads (bridge's --pipeline) only
wait in the queue, as with one thread.
"""
import collections
import os
import queue
import select
import socket
import struct
import threading
import traceback
from time import monotonic

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.stream import StreamState
from google.protobuf.message import DecodeError

from . import logs
from .runner_pb2 import DescribeResponse, RequestFrame
from .service import SERVING, describe_response, socket_path
from .streams import InputError
from .wsgi import Request

_FRAME = struct.Struct(">BHBBI")  # length (24 bits), type, flags, stream id
_PREFIX = struct.Struct(">BI")  # gRPC message: compressed flag, length
_UPDATE = struct.Struct(">BHBBII")  # a whole WINDOW_UPDATE frame
_DATA, _WINDOW_UPDATE = 0x0, 0x8
_END_STREAM, _PADDED = 0x1, 0x8
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)

# Windows we give Go: a stream may have 1 MiB in flight (a request body
# chunk is at most 1 MiB), the connection 16 MiB. Bytes are acknowledged
# once read, in batches of a quarter window.
STREAM_WINDOW = 1 << 20
CONN_WINDOW = 16 << 20
_ACK_AT = STREAM_WINDOW // 4
# A stream's acknowledgements wait while this many frames are unread
# (threads > 1): Go's sends stop there instead of filling our memory.
_BACKLOG = 4
# Slots are long-lived: bridge opens --threads + --pipeline of them, plus
# Describe and health calls.
MAX_STREAMS = 256
_MAX_FRAME = 16384  # we never raise SETTINGS_MAX_FRAME_SIZE
_READ = 256 << 10

_RESPONSE_HEADERS = ((b":status", b"200"), (b"content-type", b"application/grpc"))

_SLOT = b"/bridge.v1.Runner/Slot"
_DESCRIBE = b"/bridge.v1.Runner/Describe"
_UNARY = (_DESCRIBE, b"/grpc.health.v1.Health/Check", b"/plugin.GRPCController/Shutdown",
          b"/plugin.GRPCStdio/StreamStdio")


class _Gone(Exception):
    """The connection is closed."""


class NativeServer:
    """The runner's gRPC server around one Gateway, without grpcio."""

    def __init__(self, gateway, app_spec, threads, slots=None):
        self.gateway = gateway
        self.threads = threads
        self.inline = threads == 1
        self.shutdown_requested = threading.Event()
        self._describe = describe_response(app_spec, threads, slots, "h2/%s" % _h2_version())
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._listener = None
        self._conns = {}
        self._stopping = False
        self._thread = None
        self.path = None
        # Slot streams with a frame to serve, in arrival order: for the
        # loop itself (one thread) or for the app threads.
        self._ready = collections.deque()
        self._work = None if self.inline else queue.SimpleQueue()
        self._workers = []
        # Guards the Slot streams' queues and flags between the loop and
        # the app threads; never held while taking a connection's lock.
        self._mu = threading.Lock()

    # -- life cycle (the main thread) ------------------------------------------

    def listen(self, directory):
        path = socket_path(directory)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise OSError("cannot listen on unix:%s: %s" % (path, exc.strerror or exc)) from None
        sock.setblocking(False)
        self._listener = sock
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        self.path = path
        return path

    def start(self):
        self._thread = threading.Thread(target=self._run, name="bridge-loop", daemon=True)
        self._thread.start()
        if not self.inline:
            for i in range(self.threads):
                t = threading.Thread(target=self._worker, name="bridge-app-%d" % (i + 1), daemon=True)
                t.start()
                self._workers.append(t)

    def stop(self):
        """GOAWAY and close every connection; open streams end with them.
        The main thread calls it once the drain is over."""
        self._stopping = True
        os.write(self._wake_w, b"x")
        for _ in self._workers:
            self._work.put(None)
        if self._thread is not None:
            self._thread.join(5)  # an app that holds the loop: exit anyway
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    # -- the loop ------------------------------------------------------------

    def _run(self):
        try:
            while not self._stopping:
                self._poll(0 if self._ready else -1)
                while self._ready and not self._stopping:
                    self._serve_one(self._ready.popleft())
        except BaseException as exc:
            logs.log("error", "the runner's loop failed: %s: %s" % (type(exc).__name__, exc),
                     traceback="".join(traceback.format_exception(exc)))
            self.shutdown_requested.set()
        finally:
            for conn in list(self._conns.values()):
                conn.goaway()
            if self._listener is not None:
                self._listener.close()

    def _poll(self, timeout):
        """One turn: wait up to `timeout` seconds (-1: no limit), then
        accept, read and answer what is there. App code never runs here."""
        for fd, ev in self._epoll.poll(timeout):
            if fd == self._wake_r:
                try:
                    os.read(self._wake_r, 512)
                except BlockingIOError:
                    pass
            elif self._listener is not None and fd == self._listener.fileno():
                self._accept()
            else:
                conn = self._conns.get(fd)
                if conn is not None:
                    conn.read()

    def _accept(self):
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logs.log("warn", "accept failed: %s" % exc)
                return
            sock.setblocking(False)
            conn = _Conn(self, sock)
            self._conns[sock.fileno()] = conn
            self._epoll.register(sock.fileno(), select.EPOLLIN)
            try:
                conn.start()
            except _Gone:
                pass

    def _forget(self, conn):
        fd = conn.fd
        if self._conns.get(fd) is conn:
            del self._conns[fd]
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- calls ---------------------------------------------------------------

    def open_call(self, conn, sid, headers):
        path = None
        for name, value in headers:
            if name == b":path":
                path = value
                break
        if path == _SLOT:
            conn.calls[sid] = _Slot(conn, sid)
        elif path in _UNARY:
            conn.calls[sid] = _Unary(conn, sid, path)
        else:
            conn.trailers_only(sid, 12, "unknown method %s" % (path or b"").decode("latin-1"))

    def unary(self, call):
        """A unary call whose request is complete: answer it."""
        try:
            self._unary(call)
        except _Gone:
            call.conn.reset(call)

    def _unary(self, call):
        conn = call.conn
        if call.path == _DESCRIBE:
            reply = DescribeResponse()
            reply.CopyFrom(self._describe)
            reply.running.extend(self.gateway.running())
            conn.send(call, reply.SerializeToString())
        elif call.path == b"/grpc.health.v1.Health/Check":
            conn.send(call, SERVING)
        elif call.path == b"/plugin.GRPCController/Shutdown":
            conn.send(call, b"")
            conn.finish(call)
            # The reply is out: stopping now cancels nothing it needs.
            self.shutdown_requested.set()
            return
        conn.finish(call)  # StreamStdio: output goes to stderr, which bridge reads

    def slot_frame(self, call, frame):
        """A frame arrived for a Slot stream (the loop thread)."""
        with self._mu:
            call.queue.append(frame)
            if not call.counted and frame.HasField("head"):
                # A request read is in flight as far as a drain is
                # concerned, from now until it has been answered.
                call.counted = True
                self.gateway.queued(1)
            if call.busy:
                call.wake.notify()  # an app thread may wait for its body
                return
            if call.scheduled:
                return
            call.scheduled = True
        self._schedule(call)

    def _schedule(self, call):
        if self.inline:
            self._ready.append(call)
        else:
            self._work.put(call)

    def slot_gone(self, call):
        """A Slot stream was reset or its connection closed."""
        opened = None
        with self._mu:
            if call.counted:
                call.counted = False
                self.gateway.queued(-1)
            if call.busy:
                call.wake.notify()
            else:
                opened, call.opened = call.opened, None
        if opened is not None:
            opened.close()

    def slot_ended(self, call):
        """Go half-closed a Slot stream: it sends no more requests on it."""
        with self._mu:
            if call.busy:
                call.wake.notify()
                return
            if call.scheduled:
                return
        self._end_idle(call)

    def _end_idle(self, call):
        with self._mu:
            opened, call.opened = call.opened, None
        if opened is not None:
            opened.close()
        call.conn.finish(call)

    # -- serving -----------------------------------------------------------------

    def _worker(self):
        """An app thread (threads > 1): serve requests as they come."""
        work = self._work
        while True:
            call = work.get()
            if call is None:
                return
            try:
                self._serve_one(call)
            except BaseException as exc:  # a shim bug: this thread goes on
                logs.log("error", "internal error: %s: %s" % (type(exc).__name__, exc),
                         traceback="".join(traceback.format_exception(exc)))

    def _serve_one(self, call):
        """Serve the next request waiting on `call` (one, for fairness),
        on the loop thread (one app thread) or an app thread."""
        gw = self.gateway
        queue = call.queue
        frame = None
        opened = None
        dropped = False
        with self._mu:
            call.scheduled = False
            if call.closed:
                return
            while queue:
                f = queue.popleft()
                if call.opened is not None:
                    # Go is done with the file of the last response (see
                    # wsgi.Gateway.serve): the app may delete it now.
                    opened, call.opened = call.opened, None
                if f.HasField("head"):
                    if not call.skipping:
                        frame = f
                        break
                    call.skipping = False
                if call.skipping:
                    call.skipping = not f.end  # the rest of an unread body
                else:
                    dropped = True
            if frame is None:
                if call.counted:
                    call.counted = False
                    gw.queued(-1)
                ended = call.eof
            else:
                call.busy = True
                queued, call.counted = call.counted, False
        call.consumed()
        if opened is not None:
            opened.close()
        if dropped:
            logs.log("warn", "request frame without a head between requests: dropped")
        if frame is None:
            if ended:
                self._end_idle(call)
            return
        req = Request(gw, call, frame, call.sender)
        gw.begin(req.rid, queued)
        done = False
        gen = req.run()
        try:
            for f in gen:
                if not call.conn.send_frame(call, f):
                    break
            else:
                done = not call.cancelled
        except _Gone:
            pass
        except Exception as exc:  # a shim bug: this stream cannot go on
            logs.log("error", "internal error: %s: %s" % (type(exc).__name__, exc),
                     request_id=req.rid, traceback="".join(traceback.format_exception(exc)))
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt from the app must not stop the
            # loop or the app thread: only this stream ends.
            logs.log("error", "the application raised %s: stream closed"
                     % type(exc).__name__, request_id=req.rid)
        finally:
            call.cancelled = call.cancelled or not done
            gen.close()
            req.finish(done)
        then = None
        with self._mu:
            call.busy = False
            if done:
                if req.keep_open:
                    call.opened = req
                inp = req.input
                if inp.stray_head is not None:
                    queue.appendleft(inp.stray_head)
                elif not inp.ended:
                    call.skipping = True  # CONTRACT "Slots": discard up to its `end`
                if req.retiring:
                    then = "retire"
                elif gw.draining and not any(f.HasField("head") for f in queue):
                    then = "end"
                elif queue:
                    call.scheduled = True
                    then = "again"
                elif call.eof:
                    then = "end"
        if not done:
            call.conn.reset(call)
        elif then == "retire":
            call.conn.finish(call)
            if self.inline:
                # Requests Go sent before it saw `retire` are served: take
                # them in (and count them for the drain) before it starts.
                self._poll(0)
            gw.retired(req.rid)  # its end frame, with retire, is out
        elif then == "end":
            self._end_idle(call)
        elif then == "again":
            self._schedule(call)

    def pump(self, timeout=-1):
        """Inline: turn the loop while the app waits (for a body frame, or
        send window). Requests on other slots wait their turn."""
        self._poll(timeout)

class _Call:
    """One gRPC call (an HTTP/2 stream) on a connection."""

    __slots__ = ("conn", "sid", "partial", "closed", "ended", "eof", "headers_sent", "unacked")

    def __init__(self, conn, sid):
        self.conn = conn
        self.sid = sid
        self.partial = None  # the start of a message split across frames
        self.closed = False  # reset, or the connection went away
        self.ended = False  # our END_STREAM went out
        self.eof = False  # Go half-closed
        self.headers_sent = False
        self.unacked = 0  # stream bytes read but not acknowledged yet

    def data(self, data):
        """DATA payload (bytes or a view of the read buffer): messages."""
        partial = self.partial
        if partial is None:
            n = len(data)
            if n > 5:
                flag, size = _PREFIX.unpack_from(data)
                if n == size + 5 and not flag:
                    self.message(data[5:])  # one message, one frame: the usual case
                    return
            partial = self.partial = bytearray()
        partial += data
        while len(partial) >= 5:
            flag, size = _PREFIX.unpack_from(partial)
            if len(partial) < size + 5:
                return
            msg = bytes(partial[5:size + 5])
            del partial[:size + 5]
            if flag:
                # We accept no compressed messages (no grpc-accept-encoding).
                self.conn.reset(self, 0x1)
                return
            self.message(msg)
        if not partial:
            self.partial = None

    def backlog(self):
        return 0

    def message(self, msg):
        raise NotImplementedError

    def half_closed(self):
        self.eof = True

    def gone(self):
        self.closed = True


class _Unary(_Call):
    __slots__ = ("path",)

    def __init__(self, conn, sid, path):
        super().__init__(conn, sid)
        self.path = path

    def message(self, msg):
        pass  # none of the unary methods reads its request

    def half_closed(self):
        self.eof = True
        self.conn.server.unary(self)


class _Slot(_Call):
    """A Slot stream as wsgi.Request sees it: `cancelled`, pull(), sender.
    Its queue and flags are the server's `_mu`'s."""

    __slots__ = ("cancelled", "queue", "sender", "busy", "scheduled", "counted", "skipping",
                 "opened", "wake")

    def __init__(self, conn, sid):
        super().__init__(conn, sid)
        self.cancelled = False
        self.queue = collections.deque()
        self.busy = False  # its request is in the app
        self.scheduled = False  # waiting for the loop or an app thread
        self.counted = False  # counted as waiting (Gateway.queued)
        self.skipping = False  # discarding the unread rest of a body
        self.opened = None  # a request answered with a file, see wsgi
        self.wake = threading.Condition(conn.server._mu)  # threads > 1: pull()
        send_frame = conn.send_frame

        def sender(frame):
            return send_frame(self, frame)

        self.sender = sender

    def backlog(self):
        return len(self.queue)

    def consumed(self):
        if self.unacked >= _ACK_AT and len(self.queue) < _BACKLOG:
            self.conn.ack(self)

    def message(self, msg):
        frame = _decode(self, msg)
        if frame is not None:
            self.conn.server.slot_frame(self, frame)

    def half_closed(self):
        self.eof = True
        self.conn.server.slot_ended(self)

    def gone(self):
        self.closed = self.cancelled = True
        self.conn.server.slot_gone(self)

    def pull(self):
        """The next frame of this stream, for the app reading its body.
        One app thread: the loop turns (on this thread) until one is
        there; more: wait for the loop thread to bring it."""
        server = self.conn.server
        if server.inline:
            while not self.queue:
                self._check()
                server.pump()
            frame = self.queue.popleft()
        else:
            with server._mu:
                while not self.queue:
                    self._check()
                    self.wake.wait()
                frame = self.queue.popleft()
        self.consumed()
        return frame

    def _check(self):
        if self.cancelled:
            raise InputError("the request stream was cancelled")
        if self.eof:
            raise InputError("the request stream closed before the request's end")


class _Conn:
    """One HTTP/2 connection from bridge."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.calls = {}
        self.lock = threading.RLock()
        self.window = threading.Condition(self.lock)  # threads > 1: send window
        self.dropped = False
        self.preface = False
        self.buf = bytearray(_READ)
        self.view = memoryview(self.buf)
        self.start_at = 0
        self.end_at = 0
        self.unacked = 0  # connection bytes read, not acknowledged yet
        # In _frames: a unary reply waiting for send window cannot turn the
        # loop from there (the buffer is being parsed).
        self.parsing = False
        self.read_at = 0.0  # when send_frame last looked for input
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None,
            validate_outbound_headers=False, normalize_outbound_headers=False,
            validate_inbound_headers=False, normalize_inbound_headers=False)
        h = self.h2 = h2.connection.H2Connection(config=config)
        codes = h2.settings.SettingCodes
        h.local_settings = h2.settings.Settings(client=False, initial_values={
            codes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            codes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            codes.MAX_HEADER_LIST_SIZE: 1 << 16,
        })

    def start(self):
        with self.lock:
            self.h2.initiate_connection()
            self.h2.increment_flow_control_window(CONN_WINDOW - 65535)
            self._write(self.h2.data_to_send())

    # -- reading -------------------------------------------------------------

    def read(self):
        """Read what is there and handle its frames; never blocks."""
        if self.dropped or self.parsing:
            return
        if self.end_at == len(self.buf):
            self._compact()
        try:
            n = self.sock.recv_into(self.view[self.end_at:])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:
            self.drop()
            return
        self.end_at += n
        with self.lock:
            self.parsing = True
            try:
                self._frames()
            except h2.exceptions.ProtocolError as exc:
                logs.log("warn", "HTTP/2 connection error: %s" % exc)
                self._flush_h2()
                self.drop()
            except _Gone:
                self.drop()
            except Exception as exc:  # a bug here must not stop the runner
                logs.log("error", "HTTP/2 input failed: %s: %s" % (type(exc).__name__, exc),
                         kind="internal", traceback="".join(traceback.format_exception(exc)))
                self.drop()
            finally:
                self.parsing = False

    def _compact(self):
        start, end = self.start_at, self.end_at
        self.buf[:end - start] = self.buf[start:end]
        self.start_at, self.end_at = 0, end - start

    def _frames(self):
        """Every whole frame in the buffer: DATA on a receiving stream here,
        the rest through h2, in order. h2 only ever gets whole frames."""
        buf, view = self.buf, self.view
        off, end = self.start_at, self.end_at
        if not self.preface:
            if end - off < len(_PREFACE):
                return
            self.preface = True
            self._h2_input(bytes(view[off:off + len(_PREFACE)]))
            off += len(_PREFACE)
        h = self.h2
        streams = h.streams
        calls = self.calls
        slow = off  # frames from here to `off` go to h2
        while end - off >= 9:
            hi, lo, kind, flags, sid = _FRAME.unpack_from(buf, off)
            size = (hi << 16) | lo
            if size > _MAX_FRAME:
                off = end  # h2 answers it with FRAME_SIZE_ERROR
                break
            if end - off - 9 < size:
                break
            if kind == _DATA and not flags & (_END_STREAM | _PADDED):
                sid &= 0x7fffffff
                call = calls.get(sid)
                s = streams.get(sid)
                if call is not None and s is not None and s.state_machine.state in _RECEIVING:
                    if off > slow:
                        self._h2_input(bytes(view[slow:off]))
                        if call.closed:
                            slow = off
                            continue
                    off += 9 + size
                    slow = off
                    self.unacked += size
                    call.unacked += size
                    if size:
                        call.data(view[off - size:off])
                    if self.unacked >= _ACK_AT:
                        self._ack(0, self.unacked)
                        self.unacked = 0
                    if call.unacked >= _ACK_AT and call.backlog() < _BACKLOG:
                        self.ack(call)
                    continue
            off += 9 + size
        if off > slow:
            self._h2_input(bytes(view[slow:off]))
        self.start_at = off
        if off == self.end_at:
            self.start_at = self.end_at = 0

    def _h2_input(self, data):
        events = self.h2.receive_data(data)
        for ev in events:
            self._event(ev)
        self._flush_h2()

    def _event(self, ev):
        t = type(ev)
        calls = self.calls
        if t is h2.events.DataReceived:
            call = calls.get(ev.stream_id)
            try:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
            if call is not None and ev.data:
                call.data(ev.data)
        elif t is h2.events.RequestReceived:
            self.server.open_call(self, ev.stream_id, ev.headers)
        elif t is h2.events.StreamEnded:
            call = calls.get(ev.stream_id)
            if call is not None:
                call.half_closed()
        elif t is h2.events.StreamReset:
            call = calls.pop(ev.stream_id, None)
            if call is not None:
                call.gone()
        elif t is h2.events.WindowUpdated:
            self.window.notify_all()
        elif t is h2.events.ConnectionTerminated:
            self.window.notify_all()

    # -- acknowledgements ------------------------------------------------------

    def ack(self, call):
        """WINDOW_UPDATE for what was read of `call`'s stream."""
        n, call.unacked = call.unacked, 0
        if n and not call.closed and not call.eof:
            with self.lock:
                self._ack(call.sid, n)

    def _ack(self, sid, n):
        self._flush_h2()
        self._write(_UPDATE.pack(0, 4, _WINDOW_UPDATE, 0, sid, n))

    # -- writing ---------------------------------------------------------------

    def send_frame(self, call, frame):
        """Send one ResponseFrame; False if the stream is gone."""
        if call.closed:
            return False
        if not frame.end and self.server.inline:
            # A streaming app: take in a RST_STREAM (the client went away,
            # G4) before writing on, without waiting for anything; at most
            # once a millisecond, as a read per chunk cost more than the
            # chunk's own write.
            now = monotonic()
            if now - self.read_at > 0.001:
                self.read_at = now
                self.read()
                if call.closed:
                    return False
        try:
            self.send(call, frame.SerializeToString())
        except _Gone:
            return False
        return not call.closed

    def send(self, call, msg):
        """One gRPC message on `call`, as DATA frames that the windows
        allow; waits (turning the loop, or on `window`) for more window."""
        with self.lock:
            h = self.h2
            sid = call.sid
            if not call.headers_sent:
                call.headers_sent = True
                h.send_headers(sid, _RESPONSE_HEADERS)
            out = [h.data_to_send()]
            total = len(msg) + 5
            prefix = _PREFIX.pack(0, len(msg))
            body = memoryview(msg)
            off = 0  # bytes of prefix + msg framed so far
            while off < total:
                stream = h.streams.get(sid)
                if call.closed or stream is None or self.dropped:
                    raise _Gone()
                room = min(h.outbound_flow_control_window, stream.outbound_flow_control_window,
                           h.max_outbound_frame_size)
                if room <= 0:
                    self._write_parts(out)
                    out = []
                    self._wait_window()
                    continue
                n = min(total - off, room)
                out.append(_FRAME.pack(n >> 16, n & 0xffff, _DATA, 0, sid))
                if off < 5:
                    out.append(prefix[off:])
                    out.append(body[:n - (5 - off)])
                else:
                    out.append(body[off - 5:off - 5 + n])
                h.outbound_flow_control_window -= n
                stream.outbound_flow_control_window -= n
                off += n
            self._write_parts(out)

    def _wait_window(self):
        if self.parsing and self.server.inline:
            raise _Gone()  # a unary reply with no window: reset, see `parsing`
        if self.server.inline:
            self.lock.release()
            try:
                self.server.pump(1.0)
            finally:
                self.lock.acquire()
        else:
            self.window.wait(1.0)

    def finish(self, call, status=0, message=None):
        """End `call` with grpc-status `status` (trailers, END_STREAM)."""
        with self.lock:
            if call.ended or call.closed or self.dropped:
                return
            call.ended = True
            trailers = ((b"grpc-status", b"%d" % status),)
            if message:
                trailers += ((b"grpc-message", _percent(message)),)
            if not call.headers_sent:
                trailers = _RESPONSE_HEADERS + trailers
            try:
                self.h2.send_headers(call.sid, trailers, end_stream=True)
            except h2.exceptions.StreamClosedError:
                pass
            try:
                self._flush_h2()
            except _Gone:
                self.drop()
            self.calls.pop(call.sid, None)

    def trailers_only(self, sid, status, message):
        self.h2.send_headers(sid, _RESPONSE_HEADERS + (
            (b"grpc-status", b"%d" % status), (b"grpc-message", _percent(message))), end_stream=True)

    def reset(self, call, code=0x8):
        """RST_STREAM (CANCEL unless said): the call is over."""
        with self.lock:
            self.calls.pop(call.sid, None)
            was = call.closed
            if not was:
                call.gone()
            if was or call.ended or self.dropped:
                return
            try:
                self.h2.reset_stream(call.sid, code)
                self._flush_h2()
            except (h2.exceptions.StreamClosedError, _Gone):
                pass

    def goaway(self):
        """Shutdown: GOAWAY, then close."""
        with self.lock:
            if self.dropped:
                return
            try:
                self.h2.close_connection()
                self._flush_h2()
            except Exception:
                pass
        self.drop()

    def _flush_h2(self):
        data = self.h2.data_to_send()
        if data:
            self._write(data)

    def _write_parts(self, parts):
        data = b"".join(parts) if len(parts) > 1 else parts[0] if parts else b""
        if data:
            self._write(data)

    def _write(self, data):
        """Write all of `data`. Blocking is safe: Go's gRPC reader never
        stops reading, and what we send stays within its windows."""
        if self.dropped:
            raise _Gone()
        view = memoryview(data)
        sock = self.sock
        while view:
            try:
                n = sock.send(view)
            except (BlockingIOError, InterruptedError):
                select.select((), (sock,), (), 1.0)
                continue
            except OSError:
                self.dropped = True
                raise _Gone() from None
            view = view[n:]

    def drop(self):
        """The connection is gone: every call on it is cancelled."""
        with self.lock:
            if self.sock is None:
                return
            self.dropped = True
            self.server._forget(self)
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            calls = list(self.calls.values())
            self.calls.clear()
            for call in calls:
                call.gone()
            self.window.notify_all()


def _decode(call, msg):
    """A RequestFrame, or None after resetting a stream that sent garbage."""
    try:
        return RequestFrame.FromString(msg)
    except DecodeError as exc:
        logs.log("error", "Slot stream %d: not a RequestFrame (%s): stream reset" % (call.sid, exc))
        call.conn.reset(call, 0x1)  # PROTOCOL_ERROR
        return None


def _percent(text):
    """grpc-message is percent-encoded (gRPC over HTTP/2)."""
    out = bytearray()
    for b in text.encode("utf-8", "replace"):
        out += bytes((b,)) if 0x20 <= b <= 0x7e and b != 0x25 else b"%%%02X" % b
    return bytes(out)


def _h2_version():
    import h2 as package
    return getattr(package, "__version__", "?")
