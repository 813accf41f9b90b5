"""python3 -m bridge_runner --app MODULE:CALLABLE [--threads N]

Start-up order (runners/CONTRACT.md): check the cookie; move stdout out of
the app's reach; load the app, so that a broken app makes the process exit
with the error instead of leaving bridge a half-started plugin; listen;
write the handshake line; serve until Shutdown or SIGTERM.
"""
import argparse
import os
import queue
import signal
import sys
import threading
import traceback

from . import logs
from .durations import parse_duration

COOKIE = ("BRIDGE_PLUGIN", "runner-v1")
DEFAULT_GRACE = "30s"


class _Hurry(BaseException):
    """A second SIGTERM/SIGINT: stop waiting for in-flight requests."""


def _int_env(name, default):
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise SystemExit("bridge_runner: %s=%r is not a number" % (name, value)) from None


def _grace(text, name):
    """Seconds in a Go duration (BRIDGE_GRACE's format, runners/CONTRACT.md)."""
    try:
        ns = parse_duration(text)
    except ValueError:
        ns = -1
    if ns < 0:
        raise ValueError("%s=%s is not a duration such as 30s, 1m30s or 500ms" % (name, text))
    return ns / 1e9


def handshake_env_error(prog):
    """Why the environment is not one bridge starts a runner in, or None.
    The same checks, in the same words, in every shim (runners/CONTRACT.md,
    "Start-up")."""
    name, value = COOKIE
    if os.environ.get(name) != value:
        return "%s is a bridge runner plugin, started by bridge; %s is not %s" % (prog, name, value)
    versions = os.environ.get("PLUGIN_PROTOCOL_VERSIONS", "")
    if versions and "1" not in versions.split(","):
        return "PLUGIN_PROTOCOL_VERSIONS is %s: this runner speaks protocol version 1 only" % versions
    if not os.environ.get("PLUGIN_UNIX_SOCKET_DIR"):
        return "PLUGIN_UNIX_SOCKET_DIR is not set: bridge names the directory for the runner's socket"
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m bridge_runner",
                                description="bridge's WSGI runner (a go-plugin gRPC plugin).")
    p.add_argument("--app", required=True, metavar="MODULE:CALLABLE",
                   help="the WSGI app, imported from the working directory")
    p.add_argument("--threads", type=int, default=None,
                   help="app threads: requests the app runs at once; default $BRIDGE_THREADS or 1")
    p.add_argument("--slots", type=int, default=None,
                   help="Slot streams bridge may open (at least --threads; the ones past it "
                        "wait their turn); default $BRIDGE_SLOTS, else --threads")
    p.add_argument("--grace", default=None, metavar="DURATION",
                   help="time in-flight requests get to finish on shutdown, as a Go duration "
                        "(30s, 1m30s, 500ms); default $BRIDGE_GRACE, else 30s")
    p.add_argument("--validate", action="store_true",
                   help="wrap the app in wsgiref.validate.validator (conformance tests)")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = _int_env("BRIDGE_THREADS", 1)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    if args.slots is None:
        args.slots = _int_env("BRIDGE_SLOTS", args.threads)
    args.slots = max(args.slots, args.threads)
    return args


def _log_stacks_on_sigusr1():
    """SIGUSR1 logs every thread's stack, one JSON line per thread.

    bridge sends it to a runner that keeps a cancelled request, right after
    a Describe. faulthandler's all-threads dump reads the other threads'
    frames without the GIL and crashed the process (SIGSEGV) when a gRPC
    thread was finishing that Describe; a Python handler takes the snapshot
    with the GIL instead. The lines are written by a thread of their own:
    the signal may interrupt the main thread inside logs.log, holding the
    log lock. SimpleQueue.put is safe to call from a signal handler.
    """
    dumps = queue.SimpleQueue()

    def writer():
        while True:
            stacks = dumps.get()
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, stack in stacks.items():
                logs.log("info", "stack dump (SIGUSR1)", thread=names.get(ident, str(ident)),
                         traceback="".join(stack.format()))

    def on_sigusr1(signum, frame):
        stacks = {}
        for ident, top in sys._current_frames().items():
            if ident == threading.get_ident() and frame is not None:
                top = frame  # the code this handler interrupted, not the handler
            stack = traceback.StackSummary.extract(traceback.walk_stack(top), lookup_lines=False)
            stack.reverse()
            stacks[ident] = stack
        dumps.put(stacks)

    threading.Thread(target=writer, name="bridge-stacks", daemon=True).start()
    signal.signal(signal.SIGUSR1, on_sigusr1)


def main(argv=None):
    args = parse_args(argv)
    problem = handshake_env_error("bridge_runner")
    if problem:
        logs.log("error", problem)
        return 1
    try:
        if args.grace is not None:
            args.grace = _grace(args.grace, "--grace")
        else:
            args.grace = _grace(os.environ.get("BRIDGE_GRACE") or DEFAULT_GRACE, "BRIDGE_GRACE")
    except ValueError as exc:
        logs.log("error", str(exc))
        return 1
    workers = _int_env("BRIDGE_WORKERS", 1)

    handshake_fd = logs.capture_stdio()
    _log_stacks_on_sigusr1()
    # `python3 -m` puts the working directory first, unless -P or
    # PYTHONSAFEPATH took it away; `import app` depends on it.
    cwd = os.getcwd()
    if not sys.path or sys.path[0] != cwd:
        sys.path.insert(0, cwd)

    kind = os.environ.get("BRIDGE_PY_SERVER", "") or "native"
    if kind != "native":
        # grpcio's aio and sync servers were removed: they cost more CPU
        # and more thread wake-ups per request in every case measured
        # (python/README.md, "gRPC server").
        logs.log("error", "BRIDGE_PY_SERVER=%r: want native (grpcio's servers were removed)" % kind)
        return 1
    try:
        from .native import NativeServer as Server
    except ImportError as exc:
        logs.log("error", "cannot import the gRPC server (%s): install python3-h2 and python3-protobuf for %s"
                 % (exc, sys.executable), traceback="".join(traceback.format_exception(exc)))
        return 1
    from .loader import LoadError, load
    from .wsgi import Gateway

    try:
        app, spec = load(args.app)
    except LoadError as exc:
        logs.log("error", str(exc), app=args.app, traceback=exc.trace or None)
        return 1
    if args.validate:
        from wsgiref.validate import validator
        app = validator(app)

    gateway = Gateway(app, threads=args.threads, workers=workers)
    server = Server(gateway, spec, args.threads, slots=args.slots)
    try:
        path = server.listen(os.environ["PLUGIN_UNIX_SOCKET_DIR"])
        server.start()
    except (OSError, RuntimeError) as exc:
        logs.log("error", "cannot start the gRPC server: %s" % exc)
        return 1

    signals = [0]
    stop = server.shutdown_requested
    # bridge.retire: the app asked for this runner to exit after its
    # response; the shutdown is the same as for SIGTERM.
    gateway.on_retire = stop.set

    def on_signal(signum, frame):
        signals[0] += 1
        stop.set()
        if signals[0] > 1:
            raise _Hurry()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    os.write(handshake_fd, ("1|1|unix|%s|grpc\n" % path).encode())
    os.close(handshake_fd)
    logs.log("info", "serving %s" % spec, app=spec, threads=args.threads, slots=args.slots, socket=path, server=kind,
             worker=os.environ.get("BRIDGE_WORKER"))

    try:
        while not stop.wait(1.0):
            pass
        logs.log("info", "shutting down: waiting for %d in-flight request(s)" % gateway.in_flight)
        if not gateway.drain(args.grace):
            logs.log("warn", "%d request(s) still running after %gs: cancelling them"
                     % (gateway.in_flight, args.grace))
    except _Hurry:
        logs.log("warn", "second signal: cancelling in-flight requests")
    # A third signal does not wait for anything.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    # In-flight requests are done (or out of time): cancelling the idle
    # streams is all that is left.
    server.stop()
    # An app thread that ignores cancellation must not keep the process.
    t = threading.Timer(5.0, os._exit, (0,))
    t.daemon = True
    t.start()
    logs.log("info", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
