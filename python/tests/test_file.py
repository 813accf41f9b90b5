"""wsgi.file_wrapper and the File frame (W14, G23)."""
import io
import os
import tempfile

import pytest

from helpers import Frames, end, head, one, responses, serve


def file_app(make, headers=(), blksize=8192):
    def app(environ, start_response):
        start_response("200 OK", list(headers))
        return environ["wsgi.file_wrapper"](make(), blksize)
    return app


class CountingBytesIO(io.BytesIO):
    closes = 0

    def close(self):
        CountingBytesIO.closes += 1
        super().close()


def test_W14_bytesio_is_iterated_in_blocks_and_closed_once():
    """W14: file_wrapper(BytesIO(b'abc'), 2) → body abc, close() once."""
    CountingBytesIO.closes = 0
    r = one(file_app(lambda: CountingBytesIO(b"abc"), blksize=2), head())
    assert r.body == b"abc" and r.file is None
    assert [f.body for f in r.frames] == [b"ab", b"c", b""]
    assert CountingBytesIO.closes == 1


def test_W14_wrapper_reads_from_the_current_position():
    def make():
        f = io.BytesIO(b"0123456789")
        f.seek(4)
        return f
    assert one(file_app(make), head()).body == b"456789"


def test_G23_real_file_becomes_a_file_frame(tmp_path):
    """G23: a regular file with a path → one File frame (path, offset=tell(),
    length -1) with the head and end; Go sends the bytes itself."""
    p = tmp_path / "data.bin"
    p.write_bytes(b"x" * 1000)
    opened = []

    def make():
        f = open(p, "rb")
        f.seek(10)
        opened.append(f)
        return f

    r = one(file_app(make, [("Content-Type", "application/octet-stream")]), head())
    assert len(r.frames) == 1 and r.status == 200 and r.body == b""
    assert (r.file.path, r.file.offset, r.file.length) == (str(p), 10, -1)
    assert opened[0].closed  # closed exactly when the request is over


@pytest.mark.parametrize("frames", [[head(end=False), end()], [head()]],
                         ids=["body-then-end", "end-in-head"])
def test_G23_file_is_closed_only_after_go_is_done(tmp_path, frames):
    """The app's close() may delete the file (NamedTemporaryFile), so it runs
    only when Go is done with the exchange: when the slot's next frame
    arrives (or the stream ends), not right after the File frame."""
    f = tempfile.NamedTemporaryFile(dir=tmp_path)
    f.write(b"temp data")
    f.flush()
    f.seek(0)
    states = []
    n = len(frames)
    frames = Frames(frames + [head(rid="next")],
                    on_pull=lambda i: states.append((i, os.path.exists(f.name))))
    rs = responses(serve(file_app(lambda: f), frames))
    assert rs[0].file.path == f.name and len(rs) == 2
    assert states[:n + 1] == [(i, True) for i in range(n + 1)]
    assert states[n + 1][1] is False  # closed once the next request came
    assert not os.path.exists(f.name)


def test_G23_content_length_limits_the_file_region(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"y" * 100)
    r = one(file_app(lambda: open(p, "rb"), [("Content-Length", "40")]), head())
    assert r.file.length == 40 and not r.abort


def test_G23_short_file_for_content_length_is_iterated_and_aborted(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"z" * 10)
    r = one(file_app(lambda: open(p, "rb"), [("Content-Length", "40")]), head())
    assert r.file is None and r.body == b"z" * 10 and r.abort


def test_G23_head_and_304_send_no_file(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"w" * 10)
    r = one(file_app(lambda: open(p, "rb")), head("HEAD"))
    assert r.file is None and r.body == b""

    def app(environ, start_response):
        start_response("304 Not Modified", [])
        return environ["wsgi.file_wrapper"](open(p, "rb"))
    r = one(app, head())
    assert r.file is None and r.status == 304 and r.body == b""


def test_G23_text_files_and_pipes_are_iterated(tmp_path):
    """G23: no shortcut unless the bytes would be the same: a text-mode file
    yields str, which is an app error either way; a pipe is iterated."""
    p = tmp_path / "t.txt"
    p.write_text("text")
    r = one(file_app(lambda: open(p, "r")), head())
    assert r.error is not None and r.file is None
    rfd, wfd = os.pipe()
    os.write(wfd, b"piped")
    os.close(wfd)
    r = one(file_app(lambda: os.fdopen(rfd, "rb")), head())
    assert r.file is None and r.body == b"piped"


def test_G23_file_renamed_away_is_iterated(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"moved")

    def make():
        f = open(p, "rb")
        os.rename(p, tmp_path / "b.bin")
        return f
    r = one(file_app(make), head())
    assert r.file is None and r.body == b"moved"
