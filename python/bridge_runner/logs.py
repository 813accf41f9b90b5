"""JSON log lines on stderr, and the sys.stdout/sys.stderr replacements.

bridge reads the shim's stderr line by line and re-logs every JSON object it
finds there (see runners/CONTRACT.md, "Logs"). Everything the app prints
goes through here too, so nothing it writes can reach the handshake pipe or
break a JSON line in half.
"""
import io
import json
import os
import threading
import time

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}

PID = os.getpid()

_threshold = LEVELS.get(os.environ.get("BRIDGE_LOG_LEVEL", "info").lower(), 20)
try:
    # Lines longer than this are cut and marked (docs/conformance.md G8).
    MAX_LINE = max(256, int(os.environ.get("BRIDGE_LOG_MAX_LINE", "16384")))
except ValueError:
    MAX_LINE = 16384

_fd = 2
# One lock for all writers: a pipe write above PIPE_BUF is not atomic, and
# two threads must never interleave halves of their lines.
_lock = threading.Lock()
# The request the current thread is serving; set by the WSGI layer so that
# print() and sys.stderr writes from the app carry the request id.
_current = threading.local()
# The LineLogger objects whose partial lines a request end must flush.
_writers = []


def enabled(level):
    return LEVELS[level] >= _threshold


def log(level, message, **fields):
    """Write one JSON log line. Fields with a None value are left out."""
    if LEVELS[level] < _threshold:
        return
    if "request_id" not in fields:
        rid = getattr(_current, "request_id", None)
        if rid:
            fields["request_id"] = rid
    if len(message) > MAX_LINE:
        message = message[:MAX_LINE]
        fields["truncated"] = True
    rec = {"level": level, "message": message, "runner": "wsgi", "pid": PID,
           "ts": _timestamp()}
    for k, v in fields.items():
        if v is not None:
            rec[k] = v
    # ensure_ascii keeps lone surrogates from the app loggable as escapes.
    data = (json.dumps(rec, default=repr, separators=(",", ":")) + "\n").encode("ascii")
    with _lock:
        while data:
            try:
                n = os.write(_fd, data)
            except InterruptedError:
                continue
            except OSError:
                return  # stderr is gone: nobody is listening any more
            data = data[n:]


def _timestamp():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def begin_request(request_id):
    _current.request_id = request_id


def end_request():
    """Flush this thread's partial stdout/stderr lines, then forget the id."""
    for w in _writers:
        w.flush()
    _current.request_id = None


class LineLogger(io.TextIOBase):
    """A text stream that logs every line written to it (sys.stdout/stderr).

    Partial lines are kept per thread, so two app threads printing at the
    same time do not splice their lines together.
    """

    def __init__(self, stream, fd):
        super().__init__()
        self._stream = stream
        self._fd = fd
        self._local = threading.local()
        self.buffer = _BytesLogger(self)
        _writers.append(self)

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "replace"

    @property
    def name(self):
        return "<%s>" % self._stream

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        # fd 1 already points at stderr, so raw writes cannot corrupt the
        # handshake either; they arrive as non-JSON lines, which bridge keeps.
        return self._fd

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        pending = getattr(self._local, "pending", "")
        if "\n" not in s:
            self._local.pending = pending + s
            return len(s)
        lines = (pending + s).split("\n")
        self._local.pending = lines.pop()
        for line in lines:
            self._emit(line)
        return len(s)

    def flush(self):
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            self._emit(pending)

    def close(self):
        # The app must not be able to take logging away from everyone else.
        self.flush()

    def _emit(self, line):
        if line.endswith("\r"):
            line = line[:-1]
        if line:
            log("info", line, stream=self._stream)


class _BytesLogger(io.RawIOBase):
    """sys.stdout.buffer: bytes are decoded as UTF-8 and logged as text."""

    def __init__(self, text):
        super().__init__()
        self._text = text

    def writable(self):
        return True

    def fileno(self):
        return self._text.fileno()

    def write(self, b):
        self._text.write(bytes(b).decode("utf-8", "replace"))
        return len(b)

    def flush(self):
        self._text.flush()

    def close(self):
        self._text.flush()



def capture_stdio():
    """Point fd 1 and sys.stdout/sys.stderr at the log; return the old stdout.

    The returned fd is the only way left to the handshake pipe: bridge reads
    exactly one line from it.
    """
    handshake_fd = os.dup(1)
    os.set_inheritable(handshake_fd, False)
    os.dup2(2, 1)
    import sys
    sys.stdout = LineLogger("stdout", 1)
    sys.stderr = LineLogger("stderr", 2)
    return handshake_fd
