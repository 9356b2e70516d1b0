"""Oversize bodies are refused while they arrive, not after they are stored."""

import contextlib
import json
import socket

from django.test import override_settings

UPLOAD_LIMIT = 75_000
LIMIT = UPLOAD_LIMIT * 4 // 3 + 1024 * 1024  # what the server derives from it


def exchange(port: int, head: bytes, chunks) -> tuple[bytes, int]:
    """Send `head`, then chunks until the server answers; returns (answer, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


def envelope(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"x-request-id: req_" in head
    return json.loads(body)["error"]


def test_a_declared_oversize_body_is_refused_before_it_is_sent(arouter_server, live_key):
    head = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + live_key.raw.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )
    with override_settings(AROUTER_MAX_UPLOAD_BYTES=UPLOAD_LIMIT):
        answer, sent = exchange(arouter_server.port, head, [])
    error = envelope(answer)
    assert error["code"] == "request_too_large"
    assert str(LIMIT) in error["message"]
    assert sent == 0


def test_a_chunked_body_is_cut_off_once_past_the_limit(arouter_server, live_key):
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + live_key.raw.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 16_384
    chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(10_000))  # 160 MB offered
    with override_settings(AROUTER_MAX_UPLOAD_BYTES=UPLOAD_LIMIT):
        answer, sent = exchange(arouter_server.port, head, chunks)
    assert envelope(answer)["code"] == "request_too_large"
    assert sent < 20 * 1024 * 1024  # refused long before the end, not read whole
