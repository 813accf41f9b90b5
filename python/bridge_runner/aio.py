"""The grpc.aio server: the runner's gRPC services on an asyncio event loop.

One thread, "bridge-loop", runs the loop and does all the gRPC work: it
reads the request frames and writes the response frames of every Slot. The
app runs

- on that thread itself ("inline") when the worker has one app thread and
  the request's body is complete in its first frame: no thread hand-off at
  all. Slot streams past the first (bridge's --pipeline) wait their turn at
  the `_app_slots` semaphore; their frames still share the loop's reads,
  writes and wake-ups with the running request, which is the point;
- otherwise in one of `threads` app threads ("bridge-slot_N"), which ask
  the loop for each request frame they need and hand it each response frame
  (a `_Job`).

The main thread stays free for signals and the shutdown sequence, exactly as
with the native server.
"""
import asyncio
import collections
import os
import queue
import threading
from concurrent import futures

from grpc import aio
import grpc

from . import logs
from .runner_pb2 import DescribeRequest, DescribeResponse, RequestFrame, ResponseFrame
from .service import SERVING, describe_response, socket_path
from .streams import InputError
from .wsgi import Request

_EOF = aio.EOF


class _Slot:
    """One Slot stream, as wsgi.Request sees it: cancelled, and pull()."""

    __slots__ = ("cancelled", "job", "pending", "backlog")

    def __init__(self):
        self.cancelled = False
        self.job = None
        # A write started but not waited for (a Task): the last frame of a
        # response, so that the next read starts at once instead of after
        # one more wake-up, or a frame from write() in an inline app.
        self.pending = None
        # Frames from write() in an inline app while `pending` was busy:
        # gRPC takes one message at a time.
        self.backlog = collections.deque()

    def pull(self):
        job = self.job
        if job is None:
            # Inline requests have their whole body already.
            raise InputError("no more request body frames")
        return job.pull()


class _Job:
    """One request run by an app thread while the loop does its I/O.

    The thread posts ("frame" | "end" | "pull" | "done", item) to the loop
    and waits in `answers` for what it asked: True/False for a frame sent or
    not, the next RequestFrame (or _EOF) for a pull, None when the stream was
    cancelled.
    """

    __slots__ = ("server", "loop", "slot", "req", "box", "waiter", "answers", "abandoned")

    def __init__(self, server, slot, req):
        self.server = server
        self.loop = server._loop
        self.slot = slot
        self.req = req
        self.box = collections.deque()
        self.waiter = None
        self.answers = queue.SimpleQueue()
        self.abandoned = False

    # -- the app thread's side ---------------------------------------------

    def _post(self, kind, item=None):
        self.loop.call_soon_threadsafe(self._put, kind, item)

    def send(self, frame):
        """Send one frame now (write(), or a chunk before the last)."""
        if self.slot.cancelled:
            return False
        self._post("frame", frame)
        return bool(self.answers.get())

    def pull(self):
        if self.slot.cancelled:
            raise InputError("the request stream was cancelled")
        self._post("pull")
        frame = self.answers.get()
        if frame is None:
            self.slot.cancelled = True
            raise InputError("the request stream was cancelled")
        if frame is _EOF:
            raise InputError("the request stream closed before the request's end")
        return frame

    def run(self):
        req, slot = self.req, self.slot
        done = False
        last = None
        gen = req.run()
        try:
            for frame in gen:
                if frame.end:
                    if getattr(req.result, "close", None) is None:
                        # Nothing left to run: the last frame goes with
                        # "done", one wake-up of the loop instead of two.
                        last = frame
                    else:
                        # The body is closed while the loop sends it.
                        self._post("end", frame)
                elif not self.send(frame):
                    slot.cancelled = True
            done = not slot.cancelled
        except BaseException as exc:  # a shim bug: the stream cannot go on
            logs.log("error", "internal error: %s: %s" % (type(exc).__name__, exc),
                     request_id=req.rid)
        finally:
            gen.close()
            req.finish(done)
            self.loop.call_soon_threadsafe(self._finish, last, done)

    # -- the loop's side -----------------------------------------------------

    def _finish(self, last, done):
        self.server._app_slots.release()
        if self.abandoned and self.req.keep_open:
            self.req.close()  # nobody is left to close it after Go's turn
        if last is not None:
            self.box.append(("end", last))
        self._put("done", done)

    def _put(self, kind, item):
        self.box.append((kind, item))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self):
        while not self.box:
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.box.popleft()


class AioServer:
    """The runner's gRPC server around one Gateway, on grpc.aio."""

    def __init__(self, gateway, app_spec, threads, inline=None, slots=None):
        self.gateway = gateway
        self.threads = threads
        # Inline needs one app thread: the loop thread is the app thread then.
        self.inline = threads == 1 if inline is None else (inline and threads == 1)
        self.shutdown_requested = threading.Event()
        self._describe = describe_response(app_spec, threads, slots, "grpcio/%s aio" % grpc.__version__)
        self._pool = futures.ThreadPoolExecutor(max_workers=threads,
                                                thread_name_prefix="bridge-slot")
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._run_loop, name="bridge-loop", daemon=True)
        self._thread.start()
        self._app_slots = None
        self._grpc = self._call(self._create())
        self.path = None

    def _run_loop(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _create(self):
        # At most `threads` app calls at once whatever Go does with its
        # streams (W33): a replacement Slot opened while a cancelled one is
        # still inside the app waits here.
        self._app_slots = asyncio.Semaphore(self.threads)
        # No BDP probing: its PINGs cost both processes a wake-up per response
        # on a local socket; Go sets fixed flow-control windows instead.
        server = aio.server(options=[("grpc.http2.bdp_probe", 0)])
        server.add_generic_rpc_handlers(self._handlers())
        return server

    def _handlers(self):
        ident = dict(request_deserializer=None, response_serializer=None)
        return (
            grpc.method_handlers_generic_handler("bridge.v1.Runner", {
                "Describe": grpc.unary_unary_rpc_method_handler(
                    self._describe_rpc,
                    request_deserializer=DescribeRequest.FromString,
                    response_serializer=DescribeResponse.SerializeToString),
                "Slot": grpc.stream_stream_rpc_method_handler(
                    self._slot_rpc,
                    request_deserializer=RequestFrame.FromString,
                    response_serializer=ResponseFrame.SerializeToString),
            }),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
                "Check": grpc.unary_unary_rpc_method_handler(_health_rpc, **ident),
            }),
            grpc.method_handlers_generic_handler("plugin.GRPCController", {
                "Shutdown": grpc.unary_unary_rpc_method_handler(self._shutdown_rpc, **ident),
            }),
            grpc.method_handlers_generic_handler("plugin.GRPCStdio", {
                # Output goes to stderr, which bridge reads itself.
                "StreamStdio": grpc.unary_stream_rpc_method_handler(_stdio_rpc, **ident),
            }),
        )

    async def _describe_rpc(self, request, context):
        reply = DescribeResponse()
        reply.CopyFrom(self._describe)
        reply.running.extend(self.gateway.running())
        return reply

    async def _shutdown_rpc(self, request, context):
        # Stopping the server cancels every call, this one too: start the
        # shutdown only once its reply has gone out.
        context.add_done_callback(lambda _: self.shutdown_requested.set())
        return b""

    async def _slot_rpc(self, request_iterator, context):
        gw = self.gateway
        read, write = context.read, context.write
        slot = _Slot()
        frame = None
        req = None
        # A request answered with a File frame is closed once Go has
        # finished that exchange: when the next frame arrives or the stream
        # ends (see wsgi.Gateway.serve).
        opened = None
        try:
            while True:
                if frame is None:
                    if gw.draining:
                        return
                    try:
                        frame = await read()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        return  # Go closed or cancelled an idle slot
                    finally:
                        if opened is not None:
                            opened.close()
                            opened = None
                    if frame is _EOF:
                        return
                if not frame.HasField("head"):
                    logs.log("warn", "request frame without a head between requests: dropped")
                    frame = None
                    continue
                # A request that waits its turn counts for a drain.
                queued = self._app_slots.locked()
                if queued:
                    gw.queued(1)
                try:
                    await self._app_slots.acquire()
                    try:
                        # A cancel that came while this request waited its
                        # turn (bridge --pipeline; an inline app blocks the
                        # loop) is delivered by the loop: let it run once,
                        # so the app never sees a request whose client is
                        # gone.
                        await asyncio.sleep(0)
                    except BaseException:
                        self._app_slots.release()
                        raise
                except BaseException:
                    if queued:
                        gw.queued(-1)
                    raise
                if context.done():
                    self._app_slots.release()
                    if queued:
                        gw.queued(-1)
                    return
                req = Request(gw, slot, frame, None)
                frame = None
                gw.begin(req.rid, queued)
                if self.inline and req.input.complete():
                    slot.job = None
                    done = await self._run_inline(slot, req, write)
                else:
                    done = await self._run_in_thread(slot, req, read, write)
                if not done:
                    return
                if req.keep_open:
                    opened = req
                # CONTRACT "Slots": discard body frames up to this request's
                # `end`; a head that came early is the next request.
                inp = req.input
                frame = inp.stray_head
                while frame is None and not inp.ended:
                    try:
                        f = await read()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        return
                    if f is _EOF:
                        return
                    if f.HasField("head"):
                        frame = f
                    else:
                        inp.ended = f.end
                if req.retiring:
                    return  # no further request on this stream
        finally:
            try:
                if opened is not None:
                    opened.close()
                if slot.pending is not None and not slot.cancelled:
                    try:
                        await slot.pending
                    except Exception:
                        pass
            finally:
                if req is not None and req.retiring:
                    # bridge.retire: the end frame (with retire) is out,
                    # before the shutdown cancels the streams.
                    gw.retired(req.rid)

    async def _run_inline(self, slot, req, write):
        """Run the app on the loop thread; True if the response went out."""
        done = False
        req.sender = self._inline_sender(slot, write)
        gen = req.run()
        try:
            try:
                for frame in gen:
                    await _write(slot, write, frame)
                done = True
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # the stream is gone
            except BaseException as exc:
                # SystemExit or KeyboardInterrupt from the app must not stop
                # the event loop: only this stream ends, as in an app thread.
                logs.log("error", "the application raised %s: stream closed"
                         % type(exc).__name__, request_id=req.rid)
        finally:
            slot.cancelled = not done
            gen.close()
            req.finish(done)
            self._app_slots.release()
        return done

    def _inline_sender(self, slot, write):
        """write() for an app that runs on the loop thread (W24).

        The app holds the loop, so nothing can be awaited. The frame's send
        is started right here (gRPC core writes it to the socket at once)
        and the loop picks up its completion when the app lets go. Frames
        written while one is still in flight wait in `backlog`, in order,
        which W24 allows ("queued with a delivery guarantee").
        """
        loop = self._loop

        def send(frame):
            pending = slot.pending
            if pending is not None and pending.done():
                slot.pending = None
                if pending.cancelled() or pending.exception() is not None:
                    return False  # the stream is gone
            if slot.pending is None and not slot.backlog:
                try:
                    rest = _start(write(frame))
                except Exception:
                    return False
                if rest is not None:
                    slot.pending = loop.create_task(_finish(rest))
                    slot.pending.add_done_callback(_retrieve)
            else:
                slot.backlog.append(frame)
            return True

        return send

    async def _run_in_thread(self, slot, req, read, write):
        """Run the app in an app thread; True if the response went out."""
        job = _Job(self, slot, req)
        slot.job = job
        req.sender = job.send
        self._pool.submit(job.run)
        try:
            while True:
                kind, item = await job.get()
                if kind == "done":
                    return item and not slot.cancelled
                if kind == "pull":
                    try:
                        item = await read()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        slot.cancelled = True
                        item = None
                    job.answers.put(item)
                    continue
                try:
                    await _write(slot, write, item)
                    ok = True
                except asyncio.CancelledError:
                    raise
                except Exception:
                    slot.cancelled = True
                    ok = False
                if kind == "frame":
                    job.answers.put(ok)
        except asyncio.CancelledError:
            # The app thread finds out at its next frame and closes the
            # body; it releases the app slot itself when it is done.
            slot.cancelled = True
            job.abandoned = True
            job.answers.put(None)
            raise

    def listen(self, directory):
        path = socket_path(directory)

        async def add():
            return self._grpc.add_insecure_port("unix:" + path)

        if not self._call(add()):
            raise OSError("cannot listen on unix:%s" % path)
        self.path = path
        return path

    def start(self):
        self._call(self._grpc.start())

    def stop(self, grace=None):
        """Stop the server; open streams are cancelled (after `grace` seconds)."""
        try:
            self._call(self._grpc.stop(grace), timeout=(grace or 0) + 5)
        except (futures.TimeoutError, RuntimeError):
            pass  # an app that blocks the loop: the process exits anyway
        else:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def _new_loop():
    """uvloop's event loop if it is installed (python3-uvloop), else asyncio's."""
    if os.environ.get("BRIDGE_PY_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def _write(slot, write, frame):
    """Send one frame; a response's last frame is only started."""
    while True:
        pending = slot.pending
        if pending is not None:
            slot.pending = None
            await pending
        if not slot.backlog:
            break
        await write(slot.backlog.popleft())
    if frame.end:
        slot.pending = asyncio.get_running_loop().create_task(write(frame))
        slot.pending.add_done_callback(_retrieve)
    else:
        await write(frame)


def _start(coro):
    """Run a coroutine up to its first wait. Returns an awaitable for the
    rest, or None if it finished without waiting."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return _Rest(coro, waiting)


class _Rest:
    """The rest of a coroutine that _start() began (the `yield from` protocol)."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro, waiting):
        self.coro = coro
        self.waiting = waiting

    def __await__(self):
        coro, value = self.coro, self.waiting
        while True:
            try:
                sent = yield value
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(rest):
    return await rest


def _retrieve(task):
    # A failed last write shows at the next read; don't log it as unhandled.
    if not task.cancelled():
        task.exception()


async def _health_rpc(request, context):
    return SERVING


async def _stdio_rpc(request, context):
    return None
