"""How responses are written to the connection (arouter.http_server.HeadWithBody): a head
leaves with the first piece of body in one write, never later than the loop's next turn,
and what is written before a response starts (100 Continue) is not held."""

import asyncio
import json
import socket
from dataclasses import dataclass, field

from arouter.http_server import HeadWithBody


@dataclass
class RecordingTransport:
    """Stands in for the connection's asyncio transport: it records each write call."""

    writes: list[bytes] = field(default_factory=list)
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, pieces) -> None:
        self.writes.append(b"".join(pieces))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


@dataclass
class Cycle:
    response_started: bool = False


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def test_a_head_and_the_body_written_after_it_leave_in_one_write():
    transport, cycle = RecordingTransport(), Cycle()
    writer = HeadWithBody(transport, cycle)
    cycle.response_started = True
    writer.write(HEAD)
    assert transport.writes == []
    writer.write(b"{}")
    assert transport.writes == [HEAD + b"{}"]
    writer.write(b"more")
    assert transport.writes == [HEAD + b"{}", b"more"]
    await asyncio.sleep(0)  # the flush scheduled for the head finds nothing left
    assert transport.writes == [HEAD + b"{}", b"more"]


async def test_a_head_without_body_yet_leaves_at_the_loops_next_turn():
    transport, cycle = RecordingTransport(), Cycle()
    writer = HeadWithBody(transport, cycle)
    cycle.response_started = True
    writer.write(HEAD)
    await asyncio.sleep(0)
    assert transport.writes == [HEAD]
    writer.write(b"{}")
    assert transport.writes == [HEAD, b"{}"]


async def test_writes_before_the_response_starts_are_not_held():
    transport, cycle = RecordingTransport(), Cycle()
    writer = HeadWithBody(transport, cycle)
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


async def test_closing_sends_a_held_head_first():
    transport, cycle = RecordingTransport(), Cycle()
    writer = HeadWithBody(transport, cycle)
    cycle.response_started = True
    writer.write(HEAD)
    writer.close()
    assert (transport.writes, transport.closed) == ([HEAD], True)
    assert writer.is_closing()


def _read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One chunked answer: its head, and its body decoded."""
    answer = b""
    while not answer.endswith(b"\r\n0\r\n\r\n"):
        piece = sock.recv(65536)
        assert piece, answer[:200]
        answer += piece
    head, _, chunked = answer.partition(b"\r\n\r\n")
    body = b""
    while (size := int(chunked.split(b"\r\n", 1)[0], 16)) > 0:
        start = chunked.index(b"\r\n") + 2
        body, chunked = body + chunked[start : start + size], chunked[start + size + 2 :]
    return head, body


def test_a_client_waiting_for_100_continue_gets_it_then_the_answer(arouter_server, live_key):
    """The interim answer is written before any response starts: it is not held back
    (a client that waits for it before sending its body would otherwise never send)."""
    body = b'{"model": "local/piper", "input": "Hi.", "voice": "alloy", "response_format": "wav"}'
    with socket.create_connection(("127.0.0.1", arouter_server.port), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + live_key.raw.encode() + b"\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        head, audio = _read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: audio/wav" in head
    assert audio.startswith(b"RIFF")


def test_a_whole_answer_arrives_whole(arouter_server, live_key):
    with socket.create_connection(("127.0.0.1", arouter_server.port), timeout=10) as sock:
        for _ in range(2):  # and the kept-alive connection serves the next request
            sock.sendall(
                b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + live_key.raw.encode() + b"\r\n\r\n"
            )
            head, body = _read_answer(sock)
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert json.loads(body)["object"] == "list"
