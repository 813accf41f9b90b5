import os
import sys

# The shim is imported from the source tree, as bridge runs it (PYTHONPATH).
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

import json

import pytest


@pytest.fixture
def logfile(tmp_path, monkeypatch):
    """Send the shim's JSON log lines to a file; call the fixture to read them."""
    from bridge_runner import logs
    path = tmp_path / "log.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    monkeypatch.setattr(logs, "_fd", fd)
    monkeypatch.setattr(logs, "_threshold", 10)

    def read():
        with open(path) as f:
            return [json.loads(line) for line in f]

    yield read
    os.close(fd)
