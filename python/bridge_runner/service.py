"""What every transport serves the same way: the Describe reply, health's
answer and the socket's path. No gRPC library here: the native transport
(native.py) runs without grpcio."""
import os
import platform

from .runner_pb2 import DescribeResponse

__version__ = "0.1"

# grpc.health.v1.HealthCheckResponse{status: SERVING}, hand-encoded: the
# health stubs are not worth a dependency for one constant.
SERVING = b"\x08\x01"
# unix socket paths are limited to sizeof(sun_path) - 1 bytes on Linux.
_MAX_SOCKET_PATH = 107


def describe_response(app_spec, threads, slots, transport):
    """The constant part of every DescribeResponse; `slots` is never below
    `threads` (None: one per thread). `transport` names the gRPC server
    (it ends up in Describe.server, which bridge logs)."""
    return DescribeResponse(
        language="python",
        language_version=platform.python_version(),
        interface="wsgi/1.0",
        app=app_spec,
        threads=threads,
        slots=max(slots or 0, threads),
        pid=os.getpid(),
        server="bridge-wsgi/%s %s" % (__version__, transport),
    )


def socket_path(directory):
    """This process's socket path in `directory`, with any stale file removed."""
    path = os.path.join(directory, "bridge-wsgi-%d.sock" % os.getpid())
    if len(path.encode()) > _MAX_SOCKET_PATH:
        raise OSError("socket path %r is longer than %d bytes" % (path, _MAX_SOCKET_PATH))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return path
