"""The gRPC server: go-plugin's services, Describe, and one Slot per stream.

A sync grpc.server ties one pool thread to each open stream, which is the
slot model itself: the thread that runs a Slot's response generator is the
app thread of that slot, and serves its requests one after another.
"""
import os
import threading
from concurrent import futures

import grpc

from .runner_pb2 import DescribeRequest, DescribeResponse, RequestFrame, ResponseFrame
from .service import SERVING, describe_response, socket_path
from .wsgi import Slot


class Server:
    """The runner's gRPC server around one Gateway."""

    def __init__(self, gateway, app_spec, threads, slots=None):
        self.gateway = gateway
        self.shutdown_requested = threading.Event()
        self._describe = describe_response(app_spec, threads, slots, "grpcio/%s" % grpc.__version__)
        # A thread per slot (a stream holds one for its whole life; past
        # `threads` they wait for the gateway's app-thread semaphore), plus
        # room for health, Describe, Shutdown and a replacement Slot that Go
        # opens while a cancelled one winds down.
        self._pool = futures.ThreadPoolExecutor(max_workers=self._describe.slots + 4,
                                                thread_name_prefix="bridge-slot")
        # No BDP probing: its PINGs cost both processes a wake-up per
        # response on a local socket (measured: shim 295 -> 235 us/request at
        # concurrency 1); Go sets fixed flow-control windows instead.
        self._grpc = grpc.server(self._pool, options=[("grpc.http2.bdp_probe", 0)])
        self._grpc.add_generic_rpc_handlers(self._handlers())
        self.path = None

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
                "Check": grpc.unary_unary_rpc_method_handler(lambda req, ctx: SERVING, **ident),
            }),
            grpc.method_handlers_generic_handler("plugin.GRPCController", {
                "Shutdown": grpc.unary_unary_rpc_method_handler(self._shutdown_rpc, **ident),
            }),
            grpc.method_handlers_generic_handler("plugin.GRPCStdio", {
                # Output goes to stderr, which bridge reads itself.
                "StreamStdio": grpc.unary_stream_rpc_method_handler(lambda req, ctx: iter(()), **ident),
            }),
        )

    def _describe_rpc(self, request, context):
        reply = DescribeResponse()
        reply.CopyFrom(self._describe)
        reply.running.extend(self.gateway.running())
        return reply

    def _shutdown_rpc(self, request, context):
        # Stopping the server cancels every call, this one too: start the
        # shutdown only once its reply has gone out.
        if not context.add_callback(self.shutdown_requested.set):
            self.shutdown_requested.set()
        return b""

    def _slot_rpc(self, request_iterator, context):
        slot = Slot(request_iterator)
        # Cancellation must reach a request that is busy in the app, not
        # only one that is waiting for a frame.
        context.add_callback(slot.cancel)
        return self.gateway.serve(None, _direct_sender(context), slot)

    def listen(self, directory):
        path = socket_path(directory)
        if not self._grpc.add_insecure_port("unix:" + path):
            raise OSError("cannot listen on unix:%s" % path)
        self.path = path
        return path

    def start(self):
        self._grpc.start()

    def stop(self, grace=None):
        """Stop the server; open streams are cancelled (after `grace` seconds)."""
        self._grpc.stop(grace).wait(10)
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def _direct_sender(context):
    """A function that sends one ResponseFrame now, or None.

    The sync server only sends what the handler's generator yields, but
    write() must hand its data over before it returns while the app is
    still running inside that generator (W24). grpcio's own send step is
    private; if it is not there, write() falls back to queueing frames until
    the app returns, which PEP 3333 also allows.
    """
    try:
        from grpc import _server
        send = _server._send_response
        event, state = context._rpc_event, context._state
    except (ImportError, AttributeError):
        return None
    serialize = ResponseFrame.SerializeToString

    def sender(frame):
        return send(event, state, serialize(frame))

    return sender
