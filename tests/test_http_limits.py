"""Request heads are bounded and slow clients are timed out, on uvicorn as `make serve`
runs it (arouter.http_server): raw sockets, since no HTTP client sends such requests."""

import contextlib
import socket
import time

import pytest

from arouter.http_server import MAX_HEAD_BYTES, BoundedHttpToolsProtocol
from tests.conftest import LiveServer

OFFERED = 32 * 1024 * 1024


def offer_endless_header(port: int) -> tuple[bytes, int]:
    """Send a head whose one header never ends, until the server answers or stops reading;
    returns (everything it answered, bytes it took)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        sock.setblocking(False)
        sent, answer, piece = 0, b"", b"a" * 65536
        while sent < OFFERED and not answer:
            with contextlib.suppress(BlockingIOError):
                answer = sock.recv(65536)
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # closed with our unread bytes pending: the answer was already read
    return answer, sent


def test_an_endless_header_gets_431_and_the_connection_closed(arouter_server):
    answer, sent = offer_endless_header(arouter_server.port)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in head
    assert f"at most {MAX_HEAD_BYTES} bytes".encode() in body
    assert b'"code": "request_header_fields_too_large"' in body
    # Only what sits in socket buffers got past the limit, not the 32 MiB offered.
    assert sent < OFFERED // 2


def read_answer(sock: socket.socket) -> bytes:
    """One answer: its JSON error bodies are sent chunked, ending with an empty chunk."""
    answer = b""
    while not answer.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, answer[:200]
        answer += chunk
    return answer


def exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        return read_answer(sock)


def test_a_large_head_within_the_limit_is_served(arouter_server):
    padding = b"b" * (MAX_HEAD_BYTES - 1024)
    answer = exchange(
        arouter_server.port,
        b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + padding + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]  # reached the app: no key


def test_a_body_arriving_with_its_head_is_not_counted_as_head(arouter_server, live_key):
    body = b'{"model": "nobody/none", "pad": "' + b"c" * (4 * MAX_HEAD_BYTES) + b'"}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + live_key.raw.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    answer = exchange(arouter_server.port, head + body)  # one write: head and body together
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"messages" in answer


def closes_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` (without answering) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_connection_that_never_sends_is_closed(arouter_server):
    # The production keep-alive timeout (5 s) applies before the first request too.
    with socket.create_connection(("127.0.0.1", arouter_server.port)) as sock:
        assert closes_within(sock, 30)


class QuickDeadlines(BoundedHttpToolsProtocol):
    head_timeout = 1.0
    body_idle_timeout = 1.0


@pytest.fixture(scope="module")
def quick_server(django_db_setup, django_db_blocker):
    """The production options, with deadlines short enough to wait for in a test."""
    server = LiveServer(http=QuickDeadlines, timeout_keep_alive=1)
    server.start()
    yield server
    server.stop()


def test_a_head_sent_a_byte_at_a_time_is_cut_off(quick_server):
    head = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"d" * 200
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=30) as sock:
        closed = False
        for byte in head:  # 0.1 s a byte: 25 s for the head, each byte well within 1 s
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closes_within(sock, 0.1):
                closed = True
                break
        assert closed


def test_a_body_that_stops_arriving_is_cut_off(quick_server):
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", quick_server.port)) as sock:
        sock.sendall(head + b'{"model": ')
        assert closes_within(sock, 30)


def test_a_kept_alive_connection_serves_again_then_idles_out(quick_server):
    request = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=30) as sock:
        for _ in range(2):
            sock.sendall(request)
            assert read_answer(sock).startswith(b"HTTP/1.1 401 ")
        assert closes_within(sock, 30)
