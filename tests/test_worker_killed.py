"""A server process killed mid-stream: the client's stream ends at once, and the request
stays in the ledger, marked interrupted, instead of vanishing."""

import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from live_arouter import start_arouter

from usage.models import INTERRUPTED


@pytest.fixture
def doomed_server(tmp_path):
    """A separate ARouter process (SQLite in its own folder) that the test may kill."""
    process, port, key = start_arouter(tmp_path / "data")
    yield process, f"http://127.0.0.1:{port}", key, tmp_path / "data" / "arouter.sqlite3"
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_a_worker_killed_mid_stream_leaves_the_request_marked_interrupted(doomed_server):
    process, base_url, key, database = doomed_server
    text = " ".join(f"Sentence number {n} keeps the stream open." for n in range(40))
    body = {"model": "local/piper", "voice": "alloy", "input": text, "response_format": "pcm"}

    with (
        httpx.Client(base_url=base_url, timeout=60) as client,
        client.stream(
            "POST", "/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        chunks = response.iter_bytes()
        assert next(chunks)

        process.kill()  # SIGKILL: no cleanup runs in the server
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
        assert time.monotonic() - started < 10  # ended promptly, not left hanging

    process.wait(timeout=30)
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT status_code, endpoint FROM usage_usagerecord WHERE request_id = ?",
            (request_id,),
        ).fetchall()
    assert rows == [(INTERRUPTED, "/v1/audio/speech")]
