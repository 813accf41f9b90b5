"""Fake slots for the WSGI layer: RequestFrames in, ResponseFrames out."""
from bridge_runner import wsgi
from bridge_runner.runner_pb2 import RequestFrame, RequestHead, Var

BASE_VARS = (
    ("SCRIPT_NAME", b""),
    ("QUERY_STRING", b""),
    ("SERVER_NAME", b"example.org"),
    ("SERVER_PORT", b"80"),
    ("SERVER_PROTOCOL", b"HTTP/1.1"),
    ("REMOTE_ADDR", b"127.0.0.1"),
    ("HTTP_HOST", b"example.org"),
)


def head(method="GET", path=b"/", body=b"", end=True, length=None, rid="req-1",
         scheme="http", extra=()):
    """The first frame of a request. `length` defaults to len(body) when the
    frame ends the request, else to -1 (body until `end`)."""
    if length is None:
        length = len(body) if end else -1
    if isinstance(path, str):
        path = path.encode("latin-1")
    pairs = [("REQUEST_METHOD", method.encode("latin-1")), ("PATH_INFO", path)]
    pairs += BASE_VARS
    if length >= 0 and (length or method in ("POST", "PUT")):
        pairs.append(("CONTENT_LENGTH", str(length).encode()))
    pairs += extra
    vars_ = [Var(name=n.encode("latin-1") if isinstance(n, str) else n,
                 value=v.encode("latin-1") if isinstance(v, str) else v) for n, v in pairs]
    return RequestFrame(head=RequestHead(request_id=rid, vars=vars_, url_scheme=scheme,
                                         content_length=length),
                        body=body, end=end)


def body(data, end=False):
    return RequestFrame(body=data, end=end)


def end():
    return RequestFrame(end=True)


class Frames:
    """A request iterator that records how many frames were pulled."""

    def __init__(self, frames, on_pull=None):
        self.frames = list(frames)
        self.pulled = 0
        self.on_pull = on_pull

    def __iter__(self):
        return self

    def __next__(self):
        if self.on_pull:
            self.on_pull(self.pulled)
        if self.pulled >= len(self.frames):
            raise StopIteration
        self.pulled += 1
        return self.frames[self.pulled - 1]


def serve(app, frames, threads=1, workers=1, sender=None):
    """Run all requests in `frames` through a fresh gateway; list of frames out."""
    gw = wsgi.Gateway(app, threads=threads, workers=workers)
    return list(gw.serve(frames, sender=sender))


class Response:
    """One response assembled from its frames, with checks of G1 order."""

    def __init__(self, frames):
        self.frames = frames
        self.status = None
        self.reason = None
        self.headers = []
        self.body = b""
        self.file = None
        self.error = None
        self.abort = False
        heads = 0
        for i, f in enumerate(frames):
            if f.HasField("head"):
                heads += 1
                assert i == 0, "head after the first frame"
                self.status = f.head.status
                self.reason = f.head.reason
                self.headers = [(h.name.decode("latin-1"), h.value.decode("latin-1"))
                                for h in f.head.headers]
            if f.body == b"" and not (f.HasField("head") or f.end or f.HasField("file")):
                raise AssertionError("an empty frame was sent")
            self.body += f.body
            if f.HasField("file"):
                self.file = f.file
            if f.HasField("error"):
                self.error = f.error
                assert f.end, "error without end"
            if f.end:
                assert i == len(frames) - 1, "frames after end"
                self.abort = f.abort
        assert heads <= 1
        assert frames and frames[-1].end, "response never ended"

    def header(self, name):
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None

    def header_names(self):
        return [n.lower() for n, _ in self.headers]


def responses(frames):
    """Split a slot's output into Responses at each `end`."""
    out, cur = [], []
    for f in frames:
        cur.append(f)
        if f.end:
            out.append(Response(cur))
            cur = []
    assert not cur, "frames after the last end"
    return out


def one(app, *frames, **kw):
    """Serve one request; return its Response."""
    rs = responses(serve(app, frames, **kw))
    assert len(rs) == 1
    return rs[0]


class Closing:
    """An iterable that counts close() calls (W26)."""

    def __init__(self, items):
        self.items = items
        self.closed = 0

    def __iter__(self):
        return iter(self.items)

    def close(self):
        self.closed += 1
