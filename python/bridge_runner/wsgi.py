"""The WSGI side of a slot: RequestFrames in, app call, ResponseFrames out.

Modelled on wsgiref.handlers.BaseHandler (run, start_response, write,
finish_response, close in finally), with the response written as frames
instead of bytes on a socket. Nothing here knows about gRPC: a slot is any
iterator of RequestFrame, and the response is what Gateway.serve() yields,
so tests drive it with plain lists.
"""
import threading
import traceback

from . import logs
from .files import FileWrapper
from .headers import ProtocolError, check_headers, check_status
from .runner_pb2 import Error, File, ResponseFrame
from .streams import ErrorStream, Input, InputError

# Body frames stay at or below 1 MiB: Go's gRPC client takes 4 MiB messages
# at most, and bigger frames would not make anything faster (docs/design.md,
# "The wire contract").
MAX_CHUNK = 1 << 20

_NO_BODY_STATUS = (204, 304)
# Headers that must not go out with a 204 or 304 (G14).
_STRIP_NO_BODY = (b"content-length", b"transfer-encoding", b"content-type")


class ClientDisconnected(ConnectionAbortedError):
    """Raised in write() when the request was cancelled (client gone, G4)."""


class Slot:
    """One Slot stream: its request frames and whether it was cancelled."""

    __slots__ = ("cancelled", "_next")

    def __init__(self, frames):
        self.cancelled = False
        self._next = iter(frames).__next__

    def cancel(self, *_):
        """Mark the stream as cancelled; safe to call from any thread."""
        self.cancelled = True

    def pull(self):
        try:
            return self._next()
        except StopIteration:
            raise InputError("the request stream closed before the request's end") from None
        except Exception as exc:  # grpc.RpcError: the stream was cancelled
            self.cancelled = True
            raise InputError("the request stream was cancelled (%s)"
                             % (type(exc).__name__,)) from None


class Gateway:
    """Everything the slots of one process share: the app and its limits."""

    def __init__(self, app, threads=1, workers=1):
        self.app = app
        self.threads = threads
        # The constant part of every environ (W10, W12, W14); copied per
        # request, which is cheaper than setting the keys one by one.
        self.base_environ = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": workers > 1,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        # At most `threads` app calls at once whatever Go does with its
        # streams (W33): a replacement Slot opened while a cancelled one is
        # still inside the app waits here.
        self._app_threads = threading.BoundedSemaphore(threads)
        self._cond = threading.Condition()
        self.in_flight = 0
        # Requests that arrived on a pipelined stream and wait for an app
        # thread: in flight too as far as a drain is concerned.
        self.waiting = 0
        # Ids of the requests inside the app call, cancelled ones too until
        # the app lets go: bridge polls them through Describe after a cancel.
        self._running = []
        self.draining = False
        # Called once an app has asked for its runner to exit (bridge.retire)
        # and that response has gone out: starts the shutdown (__main__).
        self.on_retire = None

    def serve(self, frames, sender=None, slot=None):
        """Serve requests from one Slot stream; yields ResponseFrames.

        `sender`, if given, sends one frame at once and returns False when
        the stream is gone; write() uses it so that its data leaves before
        it returns (W24). Without it write() queues frames, which W24 allows.
        """
        if slot is None:
            slot = Slot(frames)
        pull = slot.pull
        frame = None
        # A request answered with a File frame: Go opens the path after it
        # gets the frame, and the app's close() may delete the file
        # (NamedTemporaryFile), so it is closed once Go has finished that
        # exchange, which is when the next frame arrives or the stream ends.
        opened = None
        try:
            while True:
                if frame is None:
                    if self.draining:
                        return
                    try:
                        frame = pull()
                    except InputError:
                        return  # Go closed or cancelled an idle slot
                    finally:
                        if opened is not None:
                            opened.close()
                            opened = None
                if not frame.HasField("head"):
                    logs.log("warn", "request frame without a head between requests: dropped")
                    frame = None
                    continue
                req = Request(self, slot, frame, sender)
                frame = None
                self._enter(req.rid)
                done = False
                try:
                    if slot.cancelled:
                        return  # cancelled while waiting for an app thread
                    yield from req.run()
                    if slot.cancelled:
                        return
                    done = True
                    frame = req.input.drain()
                except InputError:
                    return
                finally:
                    if not done:
                        # G4: a client that went away is not an app error.
                        logs.log("info", "request cancelled", request_id=req.rid)
                    if req.keep_open and done:
                        opened = req
                    else:
                        req.close()
                    self._leave(req.rid)
                    if req.retiring:
                        # The end frame (with retire) is sent: the slot's
                        # thread resumes this generator only after that.
                        self.retired(req.rid)
                if req.retiring:
                    return  # no further request on this stream
        finally:
            if opened is not None:
                opened.close()

    def _enter(self, rid):
        if self._app_threads.acquire(False):
            self.begin(rid)
            return
        self.queued(1)
        self._app_threads.acquire()
        self.begin(rid, queued=True)

    def _leave(self, rid):
        logs.end_request()
        self.end(rid)
        self._app_threads.release()

    def begin(self, rid, queued=False):
        """Count a request as in flight (Describe.running, drain); `queued`:
        it was counted as waiting for an app thread until now."""
        with self._cond:
            if queued:
                self.waiting -= 1
            self.in_flight += 1
            self._running.append(rid)

    def queued(self, n):
        """Count requests waiting for an app thread (+1) or no longer (-1)."""
        with self._cond:
            self.waiting += n
            if not self.waiting and not self.in_flight:
                self._cond.notify_all()

    def end(self, rid):
        with self._cond:
            self.in_flight -= 1
            self._running.remove(rid)
            if not self.in_flight and not self.waiting:
                self._cond.notify_all()

    def running(self):
        """Ids of the requests whose app call has not returned (or closed) yet."""
        with self._cond:
            return list(self._running)

    def drain(self, timeout):
        """Stop taking requests; wait for in-flight ones, those waiting for an
        app thread included. True if they finished."""
        with self._cond:
            self.draining = True
            return self._cond.wait_for(lambda: not self.in_flight and not self.waiting, timeout)

    def retired(self, rid):
        """The app asked for this runner to exit (bridge.retire) and its
        response has gone out, its end frame carrying `retire` (CONTRACT
        "Slots"): no further request is taken, the ones in flight finish,
        and the process exits 0 as on SIGTERM."""
        logs.log("info", "bridge.retire: the worker exits after this request", request_id=rid)
        self.draining = True
        if self.on_retire is not None:
            self.on_retire()


class Request:
    """One request on a slot; run() yields its response frames."""

    __slots__ = (
        "gw", "slot", "environ", "input", "errors", "rid", "is_head", "sender",
        "sr_called", "code", "reason", "headers", "length", "no_body",
        "head_sent", "wrote", "queue", "left", "overrun", "result", "closed",
        "keep_open", "retiring",
    )

    def __init__(self, gw, slot, frame, sender):
        head = frame.head
        self.gw = gw
        self.slot = slot
        self.sender = sender
        self.rid = rid = head.request_id
        env = gw.base_environ.copy()
        for var in head.vars:
            env[var.name.decode("latin-1")] = var.value.decode("latin-1")
        env["wsgi.url_scheme"] = head.url_scheme or "http"
        env["wsgi.input"] = self.input = Input(slot.pull, head.content_length, frame)
        env["wsgi.errors"] = self.errors = ErrorStream(rid)
        env["bridge.request_id"] = rid
        env["bridge.retire"] = self.retire
        self.environ = env
        # Taken before the app runs: the app may rewrite its environ.
        self.is_head = env.get("REQUEST_METHOD") == "HEAD"
        self.sr_called = False
        self.code = None
        self.reason = None
        self.headers = None
        self.length = None
        self.no_body = False
        self.head_sent = False
        self.wrote = False
        self.queue = None
        self.left = None
        self.overrun = False
        self.result = None
        self.closed = False
        self.keep_open = False
        self.retiring = False

    # -- the app's side --------------------------------------------------------

    def start_response(self, status, headers, exc_info=None):
        """PEP 3333 start_response (W15-W20)."""
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback (W20)
        elif self.sr_called:
            raise AssertionError("start_response() called again without exc_info: headers already set")
        # Counted as called even if the checks below raise (W19), and a
        # rejected status or header list leaves no response to send (W27).
        self.sr_called = True
        self.code = None
        code, reason = check_status(status)
        pairs, length = check_headers(headers)
        self.code, self.reason, self.headers, self.length = code, reason, pairs, length
        self.no_body = self.is_head or code in _NO_BODY_STATUS
        self.left = length
        return self.write

    def write(self, data):
        """The legacy write() callable (W24)."""
        if self.code is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError("write() argument must be bytes, not %s" % type(data).__name__)
        if self.slot.cancelled:
            raise ClientDisconnected("the client went away")
        self.wrote = True
        if self.no_body or self.overrun:
            data = b""
        elif self.left is not None:
            if len(data) > self.left:
                data = self._truncate(data)
            else:
                self.left -= len(data)
        if self.head_sent and not data:
            return
        for frame in self._body_frames(data, False):
            if self.sender is None:
                if self.queue is None:
                    self.queue = []
                self.queue.append(frame)
            elif not self.sender(frame):
                self.slot.cancelled = True
                raise ClientDisconnected("the client went away")

    def retire(self):
        """environ['bridge.retire']: ask the runner to exit after this
        response. Its end frame carries `retire`; call it before the body
        ends (a call from close() still stops the runner, unannounced)."""
        self.retiring = True

    # -- the server's side -----------------------------------------------------

    def run(self):
        logs.begin_request(self.rid)
        try:
            try:
                self.result = self.gw.app(self.environ, self.start_response)
                yield from self._respond(self.result)
            except Exception as exc:
                if self.queue:
                    yield from self._take_queue()
                if self.slot.cancelled:
                    return  # nobody to tell; Gateway.serve logs the cancel
                yield self._error_frame(exc)
        finally:
            if not self.keep_open:
                self.close()

    def finish(self, done):
        """The request leaves the app: `done` if its response went out,
        else it was cancelled. What a server does after run() (a request
        answered with a file stays open, see Gateway.serve)."""
        if not done:
            # G4: a client that went away is not an app error.
            logs.log("info", "request cancelled", request_id=self.rid)
        if not (done and self.keep_open):
            self.close()
        logs.end_request()
        self.gw.end(self.rid)

    def close(self):
        """Close the app's result, exactly once on every path (W26, G5)."""
        if self.closed:
            return
        self.closed = True
        self.errors.flush()
        result, self.result = self.result, None
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                logs.log("error", "exception in the application's close(): %s: %s"
                         % (type(exc).__name__, exc), request_id=self.rid,
                         traceback="".join(traceback.format_exception(exc)))

    def _respond(self, result):
        if self.queue:
            yield from self._take_queue()
        t = type(result)
        if t is list or t is tuple:
            yield from self._respond_list(result)
            return
        if t is FileWrapper and not self.wrote:
            region = result.region()
            if region is not None:
                yield from self._respond_file(result, region)
                return
        if t is str or t is bytes or t is bytearray:
            raise ProtocolError("the application returned %s instead of an iterable of bytes"
                                % t.__name__)
        slot = self.slot
        for chunk in result:
            if type(chunk) is not bytes:
                raise ProtocolError("the application yielded %s, not bytes" % type(chunk).__name__)
            if self.queue:
                yield from self._take_queue()
            if slot.cancelled:
                return
            if not chunk:
                continue  # W22: never a header, never an empty frame
            if self.code is None:
                raise ProtocolError("the application yielded body data before calling start_response()")
            if not self.head_sent and self.length is None and not self.wrote:
                self._length_if_single(result, len(chunk))
            if self.no_body or self.overrun:
                # HEAD, 204, 304 (W30, G14) or Content-Length reached (W28):
                # the head is final now, nothing more goes out.
                if self.code in _NO_BODY_STATUS:
                    logs.log("debug", "body of a %d response dropped" % self.code)
                yield self._frame(end=True)
                return
            if self.left is not None:
                if len(chunk) > self.left:
                    chunk = self._truncate(chunk)
                    yield from self._body_frames(chunk, True)
                    return
                self.left -= len(chunk)
            yield from self._body_frames(chunk, False)
        if self.queue:
            yield from self._take_queue()
        yield self._end_frame()

    def _respond_list(self, result):
        # Every item is there already: one frame for the whole body, so a
        # hello world is one message each way (docs/design.md, "The wire
        # contract").
        for chunk in result:
            if type(chunk) is not bytes:
                raise ProtocolError("the application returned a %s holding %s, not bytes"
                                    % (type(result).__name__, type(chunk).__name__))
        if self.code is None:
            raise ProtocolError("the application returned without calling start_response()")
        body = result[0] if len(result) == 1 else b"".join(result)
        if not self.head_sent and self.length is None and not self.wrote:
            self._length_if_single(result, len(body))
        if self.no_body or self.overrun:
            if body and self.code in _NO_BODY_STATUS:
                logs.log("debug", "body of a %d response dropped" % self.code)
            yield self._frame(end=True)
            return
        abort = False
        if self.left is not None:
            if len(body) > self.left:
                body = self._truncate(body)
            else:
                abort = len(body) < self.left
                if abort:
                    logs.log("warn", "response body is %d bytes short of its Content-Length: "
                             "aborted" % (self.left - len(body)))
                self.left -= len(body)
        if not body and self.length is None and not self.head_sent and not self.is_head:
            self._add_length(0)  # W29, as wsgiref does
        yield from self._body_frames(body, True, abort)

    def _respond_file(self, wrapper, region):
        path, offset, size = region
        if self.code is None:
            raise ProtocolError("the application returned without calling start_response()")
        if self.no_body or self.overrun:
            yield self._frame(end=True)
            return
        length = -1
        if self.left is not None:
            if size < self.left:
                # Short of its Content-Length: iterate, so that the usual
                # abort happens at the end of what is really there.
                yield from self._respond_iter_file(wrapper)
                return
            if size > self.left:
                logs.log("warn", "file is %d bytes longer than the response's Content-Length: truncated"
                         % (size - self.left))
            length = self.left
            self.left = 0
        frame = self._frame(end=True)
        frame.file.CopyFrom(File(path=path, offset=offset, length=length))
        yield frame
        self.keep_open = True  # closed by Gateway.serve, see there

    def _respond_iter_file(self, wrapper):
        for chunk in wrapper:
            if type(chunk) is not bytes:
                raise ProtocolError("file_wrapper read %s, not bytes" % type(chunk).__name__)
            if self.slot.cancelled:
                return
            if not chunk:
                continue
            if len(chunk) > self.left:
                yield from self._body_frames(self._truncate(chunk), True)
                return
            self.left -= len(chunk)
            yield from self._body_frames(chunk, False)
        yield self._end_frame()

    # -- frames ------------------------------------------------------------

    def _frame(self, body=b"", end=False, abort=False):
        frame = ResponseFrame(body=body, end=end, abort=abort)
        if end and self.retiring:
            frame.retire = True
        if not self.head_sent:
            self.head_sent = True
            head = frame.head
            head.status = self.code
            head.reason = self.reason
            add = head.headers.add
            if self.code in _NO_BODY_STATUS:
                for name, value in self.headers:
                    if name.lower() not in _STRIP_NO_BODY:
                        add(name=name, value=value)
            else:
                for name, value in self.headers:
                    add(name=name, value=value)
        return frame

    def _body_frames(self, body, end, abort=False):
        """Frames for one chunk: usually one, more when it is over 1 MiB."""
        if len(body) <= MAX_CHUNK:
            return (self._frame(body, end, abort),)
        view = memoryview(body)
        last = len(body) - MAX_CHUNK
        frames = [self._frame(bytes(view[i:i + MAX_CHUNK])) for i in range(0, last, MAX_CHUNK)]
        frames.append(self._frame(bytes(view[len(frames) * MAX_CHUNK:]), end, abort))
        return frames

    def _end_frame(self):
        if self.code is None:
            raise ProtocolError("the application returned without calling start_response()")
        if self.no_body or self.overrun:
            return self._frame(end=True)
        if not self.head_sent and self.length is None:
            self._add_length(0)  # W29: nothing was sent, as wsgiref does
        if self.left:
            # G13: short of the declared length; a clean end would look
            # like a complete response to the client.
            logs.log("warn", "response body is %d bytes short of its Content-Length: aborted"
                     % self.left)
            return self._frame(end=True, abort=True)
        return self._frame(end=True)

    def _error_frame(self, exc):
        if isinstance(exc, ProtocolError):
            kind = "protocol"
        elif isinstance(exc, InputError):
            kind = "input"
        else:
            kind = "app"
        err = Error(kind=kind,
                    message=_text("%s: %s" % (type(exc).__name__, exc)),
                    traceback=_text("".join(traceback.format_exception(exc))))
        # After the head the client must see a cut connection, not a body
        # that looks complete (G3).
        return ResponseFrame(error=err, end=True, abort=self.head_sent, retire=self.retiring)

    def _take_queue(self):
        queue, self.queue = self.queue, None
        for frame in queue:
            yield frame
            if self.slot.cancelled:
                return

    def _truncate(self, chunk):
        logs.log("warn", "response body is longer than its Content-Length %d: truncated"
                 % self.length)
        self.overrun = True
        chunk = chunk[:self.left]
        self.left = 0
        return chunk

    def _length_if_single(self, result, n):
        # W29: a one-item result is the whole body; not for 204/304 (G14)
        # and not a made-up 0 for HEAD.
        if self.code in _NO_BODY_STATUS or (self.is_head and not n):
            return
        try:
            if len(result) != 1:
                return
        except Exception:
            return
        self._add_length(n)

    def _add_length(self, n):
        if self.code in _NO_BODY_STATUS:
            return
        self.headers.append((b"Content-Length", str(n).encode("ascii")))
        self.length = n


def _text(s):
    # proto3 strings must be valid UTF-8; app messages may hold surrogates.
    return s.encode("utf-8", "backslashreplace").decode("utf-8")
