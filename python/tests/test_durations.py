"""BRIDGE_GRACE's format: every case of testdata/durations.txt, which a Go
test checks against time.ParseDuration and the other shims read too."""
import os

import pytest

from bridge_runner.durations import parse_duration

TABLE = os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "durations.txt")


def cases():
    with open(TABLE, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                text, want = line.split("\t")
                yield pytest.param(text, want, id="line%d" % n)


@pytest.mark.parametrize("text,want", list(cases()))
def test_parse_duration_agrees_with_go(text, want):
    if want == "error":
        with pytest.raises(ValueError):
            parse_duration(text)
    else:
        assert parse_duration(text) == int(want)
