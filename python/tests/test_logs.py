"""wsgi.errors, sys.stdout/sys.stderr capture and the JSON log lines (W13, G7, G8)."""
import threading

from bridge_runner import logs
from bridge_runner.streams import ErrorStream
from helpers import head, one


def test_W13_G8_wsgi_errors_lines_become_log_records(logfile):
    """W13/G8: write/writelines/flush; one record per line with request_id and
    stream 'errors'; partial lines wait for newline, flush or request end."""
    def app(environ, start_response):
        err = environ["wsgi.errors"]
        err.write("first line\nsecond ")
        err.write("line\n")
        err.writelines(["a\n", "b"])
        err.flush()
        err.write("unicode \u2603 \udcff surrogate\n")
        err.write("left over at the end")
        err.close()
        err.write(" still works after close()\n")
        err.write("dangling")
        start_response("200 OK", [])
        return [b"ok"]

    one(app, head(rid="rid-7"))
    recs = [r for r in logfile() if r.get("stream") == "errors"]
    assert [r["message"] for r in recs] == [
        "first line", "second line", "a", "b", "unicode \u2603 \udcff surrogate",
        "left over at the end still works after close()", "dangling"]
    for r in recs:
        assert r["request_id"] == "rid-7" and r["level"] == "info"
        assert r["runner"] == "wsgi" and isinstance(r["pid"], int)


def test_W13_errors_write_rejects_bytes():
    import pytest
    with pytest.raises(TypeError):
        ErrorStream("x").write(b"bytes")


def test_G8_line_logger_per_thread_partial_lines_and_request_id(logfile):
    """G8/G7: print() output becomes stdout records; partial lines are kept
    per thread and flushed at the end of the thread's request."""
    out = logs.LineLogger("stdout", 1)
    try:
        logs.begin_request("r-1")
        print("hello", "world", file=out)
        out.write("partial ")

        def other():
            out.write("from the other thread\n")
        t = threading.Thread(target=other)
        t.start()
        t.join()
        out.write("line\r\nunfinished")
        logs.end_request()
        out.write("outside\n")
    finally:
        logs._writers.remove(out)
    recs = [(r["message"], r.get("request_id")) for r in logfile() if r.get("stream") == "stdout"]
    assert recs == [("hello world", "r-1"), ("from the other thread", None),
                    ("partial line", "r-1"), ("unfinished", "r-1"), ("outside", None)]


def test_G8_binary_buffer_and_long_lines(logfile, monkeypatch):
    out = logs.LineLogger("stderr", 2)
    monkeypatch.setattr(logs, "MAX_LINE", 300)
    try:
        out.buffer.write(b"caf\xc3\xa9\n")
        out.write("x" * 1000 + "\n")
    finally:
        logs._writers.remove(out)
    recs = [r for r in logfile() if r.get("stream") == "stderr"]
    assert recs[0]["message"] == "caf\xe9"
    assert len(recs[1]["message"]) == 300 and recs[1]["truncated"] is True


def test_G8_app_print_during_request_is_logged_with_its_id(logfile, monkeypatch):
    import sys
    out = logs.LineLogger("stdout", 1)
    monkeypatch.setattr(sys, "stdout", out)
    try:
        def app(environ, start_response):
            print("HTTP/1.1 200 OK\r\n\r\n", end="")
            start_response("200 OK", [])
            return [b"body"]
        r = one(app, head(rid="print-1"))
    finally:
        logs._writers.remove(out)
    assert r.body == b"body"
    recs = [r for r in logfile() if r.get("stream") == "stdout"]
    assert [x["message"] for x in recs] == ["HTTP/1.1 200 OK"]
    assert recs[0]["request_id"] == "print-1"


def test_log_levels_and_fields(logfile):
    logs.log("error", "bad thing", traceback="tb", extra=None, n=3)
    rec = logfile()[-1]
    assert rec["level"] == "error" and rec["message"] == "bad thing"
    assert rec["traceback"] == "tb" and rec["n"] == 3 and "extra" not in rec
    assert rec["runner"] == "wsgi" and "ts" in rec
