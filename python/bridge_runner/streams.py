"""wsgi.input over the slot's body frames, and wsgi.errors.

The request body is never read ahead: a body frame is taken from the slot
only when the app asks for bytes that are not buffered yet (CONTRACT.md,
"Slots"), so a slow upload streams through instead of being collected.
"""
from . import logs


class InputError(OSError):
    """The request body cannot be read: the stream failed or was cut short."""


class Input:
    """wsgi.input (docs/conformance.md W11, W12).

    `pull` returns the next RequestFrame of this slot, or raises InputError
    when the stream is gone. `length` is RequestHead.content_length: the
    exact body size, or -1 when the body runs until the `end` frame.
    """

    __slots__ = ("_pull", "_buf", "_pos", "_need", "_length", "ended", "stray_head")

    def __init__(self, pull, length, first):
        self._pull = pull
        self._length = length
        self.ended = first.end
        # A head that arrived before this request's `end`: Go broke the
        # protocol, but the head still belongs to the next request.
        self.stray_head = None
        body = first.body
        if length >= 0:
            if len(body) > length:
                body = body[:length]
            self._need = length - len(body)
        else:
            self._need = -1
        self._buf = body
        self._pos = 0

    def complete(self):
        """True when the whole body is here: reading never waits for a frame."""
        return self.ended or self._need == 0

    # -- frames --------------------------------------------------------------

    def _more(self):
        """The next non-empty piece of body, or b'' at the end of it.

        Never blocks once the declared length has arrived (W11): the frame
        with `end` may still be on its way, and waiting for it could hang a
        client that keeps the request open.
        """
        while True:
            if self._need == 0:
                return b""
            if self.ended:
                if self._need > 0:
                    raise InputError("request body ended after %d of %d bytes"
                                     % (self._length - self._need, self._length))
                return b""
            frame = self._pull()
            if frame.HasField("head"):
                self.stray_head = frame
                self.ended = True
                continue
            self.ended = frame.end
            data = frame.body
            if self._need > 0:
                if len(data) > self._need:
                    data = data[:self._need]
                self._need -= len(data)
            if data:
                return data

    def drain(self):
        """Discard body frames up to this request's `end` (CONTRACT "Slots").

        Returns the head frame of the next request if Go sent one early.
        """
        self._buf = b""
        self._pos = 0
        while not self.ended:
            frame = self._pull()
            if frame.HasField("head"):
                return frame
            self.ended = frame.end
        return self.stray_head

    # -- the file API ----------------------------------------------------------

    def read(self, size=-1):
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if size is None or size < 0:
            parts = [buf[pos:]] if avail else []
            self._buf, self._pos = b"", 0
            while True:
                data = self._more()
                if not data:
                    return b"".join(parts)
                parts.append(data)
        if avail >= size:
            self._pos = pos + size
            return buf[pos:pos + size]
        parts = [buf[pos:]] if avail else []
        got = avail
        self._buf, self._pos = b"", 0
        while got < size:
            data = self._more()
            if not data:
                break
            want = size - got
            if len(data) > want:
                parts.append(data[:want])
                self._buf, self._pos = data, want
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def readline(self, size=-1):
        if size is None or size < 0:
            size = -1
        elif size == 0:
            return b""
        buf, pos = self._buf, self._pos
        stop = len(buf) if size < 0 else min(len(buf), pos + size)
        i = buf.find(b"\n", pos, stop)
        if i >= 0:
            self._pos = i + 1
            return buf[pos:i + 1]
        if stop - pos == size:
            self._pos = stop
            return buf[pos:stop]
        parts = [buf[pos:]] if pos < len(buf) else []
        got = len(buf) - pos
        self._buf, self._pos = b"", 0
        while True:
            data = self._more()
            if not data:
                break
            limit = len(data) if size < 0 else min(len(data), size - got)
            i = data.find(b"\n", 0, limit)
            cut = i + 1 if i >= 0 else limit
            if cut < len(data):
                parts.append(data[:cut])
                self._buf, self._pos = data, cut
                break
            parts.append(data)
            got += len(data)
            if i >= 0 or got == size:
                break
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self):
        return True

    def close(self):
        pass


class ErrorStream:
    """wsgi.errors (W13): each line becomes a log record of this request."""

    __slots__ = ("_rid", "_pending")

    closed = False
    encoding = "utf-8"
    errors = "backslashreplace"

    def __init__(self, request_id):
        self._rid = request_id
        self._pending = ""

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("wsgi.errors.write() argument must be str, not %s"
                            % type(s).__name__)
        if "\n" not in s:
            self._pending += s
            return len(s)
        lines = (self._pending + s).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._emit(line)
        return len(s)

    def writelines(self, seq):
        for s in seq:
            self.write(s)

    def flush(self):
        if self._pending:
            line, self._pending = self._pending, ""
            self._emit(line)

    def close(self):
        pass

    def writable(self):
        return True

    def isatty(self):
        return False

    def _emit(self, line):
        if line.endswith("\r"):
            line = line[:-1]
        if line:
            logs.log("info", line, stream="errors", request_id=self._rid)
