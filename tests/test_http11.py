"""The HTTP/1.1 transport under httpx, against a real HTTP server on loopback."""

import asyncio
import socket

import httpx
import pytest

from gateway.providers.http11 import ChunkedDecoder, Http11Transport, transport_for

CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n1\r\nh\r\n0\r\nx-trailer: 1\r\n\r\n"
)
CONTINUE_THEN_OK = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)


class LoopbackServer:
    """A few HTTP/1.1 answers, by path:

    `/<n>`        n bytes with a Content-Length       `/chunked`  three chunks and a trailer
    `/one-big-chunk`  300 KB in one chunk            `/small-chunks`  50 chunks in one write
    `/close`      answers, then closes                `/slow`     never answers
    `/truncated`  promises 10 bytes, sends 3, closes  `/until-eof`  no length: ends at close
    `/continue`   a 100 Continue first                `/204`      no content
    `/echo`       the request's body back (Content-Length or chunked)
    """

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> "LoopbackServer":
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    @property
    def url(self) -> str:
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path = head.split(b" ", 2)[:2]
                body = await read_body(reader, head)
                if not await self.answer(path.decode(), method, body, writer):
                    writer.close()
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def answer(self, path: str, method: bytes, body: bytes, writer) -> bool:
        """Write the answer for `path`; False: close the connection after it."""
        if path == "/slow":
            await asyncio.sleep(30)
        if path == "/chunked":
            writer.write(CHUNKED)
        elif path == "/one-big-chunk":
            data = b"y" * 300_000
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        elif path == "/small-chunks":
            chunks = b"".join(b"a\r\n%s\r\n" % (b"%010d" % n) for n in range(50))
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)
            writer.write(b"0\r\n\r\n")
        elif path == "/truncated":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            return False
        elif path == "/until-eof":
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
            return False
        elif path == "/continue":
            writer.write(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            )
        elif path == "/204":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif path == "/echo":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        else:
            data = b"x" * int(path[1:]) if path[1:].isdigit() else b"bye"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data))
        return path != "/close"


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    lines = head.lower().split(b"\r\n")
    if b"transfer-encoding: chunked" in lines:
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return body
    for line in lines:
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


def client(base_url: str, **timeouts) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(5, **timeouts),
        transport=transport_for(base_url, http2=False, limits=LIMITS),
    )


def test_plain_http_upstreams_use_this_transport_and_tls_ones_httpxs_own():
    plain = transport_for("http://127.0.0.1:9/v1", http2=False, limits=LIMITS)
    tls = transport_for("https://api.example.com/v1", http2=True, limits=LIMITS)

    assert isinstance(plain, Http11Transport)
    assert isinstance(tls, httpx.AsyncHTTPTransport)


@pytest.mark.asyncio
async def test_bodies_arrive_whole_over_one_kept_alive_connection():
    async with LoopbackServer() as server, client(server.url) as http:
        for size in (0, 10, 3_000_000):
            response = await http.get(f"/{size}")
            assert response.status_code == 200
            assert response.content == b"x" * size

    assert server.connections == 1


@pytest.mark.asyncio
async def test_a_connection_the_server_closed_is_noticed_and_replaced():
    async with LoopbackServer() as server, client(server.url) as http:
        assert (await http.get("/close")).content == b"bye"
        await asyncio.sleep(0.05)  # let the loop read the server's EOF
        assert (await http.get("/5")).content == b"xxxxx"

    assert server.connections == 2


@pytest.mark.asyncio
async def test_a_silent_server_times_out_as_httpx_read_timeout():
    async with LoopbackServer() as server, client(server.url, read=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/slow")


@pytest.mark.asyncio
async def test_a_closed_port_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client(f"http://127.0.0.1:{port}") as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/1")


@pytest.mark.asyncio
async def test_chunked_answers_arrive_whole_and_keep_the_connection():
    async with LoopbackServer() as server, client(server.url) as http:
        assert (await http.get("/chunked")).content == b"abcdefgh"
        assert (await http.get("/continue")).content == b"ok"  # after its 100 Continue
        assert (await http.get("/204")).status_code == 204
        assert (await http.get("/3")).content == b"xxx"

    assert server.connections == 1


@pytest.mark.asyncio
async def test_request_bodies_go_whole_with_their_length_or_chunked():
    async def pieces():
        yield b"streamed "
        yield b""
        yield b"in pieces"

    async with LoopbackServer() as server, client(server.url) as http:
        assert (await http.post("/echo", content=b"in memory")).content == b"in memory"
        assert (await http.post("/echo", content=pieces())).content == b"streamed in pieces"

    assert server.connections == 1


@pytest.mark.asyncio
async def test_a_body_cut_short_is_a_protocol_error_and_its_connection_is_not_kept():
    async with LoopbackServer() as server, client(server.url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/truncated")
        assert (await http.get("/until-eof")).content == b"all of it"  # HTTP/1.0: ends at close
        assert (await http.get("/2")).content == b"xx"

    assert server.connections == 3


@pytest.mark.asyncio
async def test_a_response_closed_unread_frees_its_connection_slot():
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with LoopbackServer() as server:
        transport = transport_for(server.url, http2=False, limits=limits)
        async with httpx.AsyncClient(base_url=server.url, transport=transport) as http:
            for _ in range(3):  # one slot: each must be given back
                async with http.stream("GET", "/3000000") as response:
                    assert response.status_code == 200
            with pytest.raises(httpx.PoolTimeout):
                async with http.stream("GET", "/1"):
                    await http.get("/1", timeout=httpx.Timeout(5, pool=0.1))


async def pieces_of(path: str) -> list[bytes]:
    """The pieces a streamed body arrives in; the connection then serves another request
    (the body's end was found), and only one connection was made."""
    async with LoopbackServer() as server, client(server.url) as http:
        async with http.stream("GET", path) as response:
            pieces = [piece async for piece in response.aiter_raw()]
        assert (await http.get("/1")).content == b"x"
    assert server.connections == 1
    return pieces


@pytest.mark.asyncio
async def test_a_large_chunk_is_passed_on_as_it_arrives_not_held_whole():
    pieces = await pieces_of("/one-big-chunk")
    assert b"".join(pieces) == b"y" * 300_000
    assert len(pieces) > 1  # read in pieces of at most 64 KB


@pytest.mark.asyncio
async def test_chunks_that_arrive_together_are_passed_on_together():
    pieces = await pieces_of("/small-chunks")
    assert b"".join(pieces) == b"".join(b"%010d" % n for n in range(50))
    assert len(pieces) < 50  # one piece per read, not one per chunk


def test_chunked_framing_split_anywhere_decodes_the_same():
    body = CHUNKED.partition(b"\r\n\r\n")[2]
    for size in (1, 2, 3, 5, 7):
        decoder, payload = ChunkedDecoder(), b""
        for at in range(0, len(body), size):
            payload += decoder.feed(body[at : at + size])
        assert (payload, decoder.done, decoder.leftover) == (b"abcdefgh", True, b"")


def test_bytes_after_the_last_chunk_are_left_over():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK") == b"ok"
    assert (decoder.done, decoder.leftover) == (True, b"HTTP/1.1 200 OK")


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        (b"zz\r\nabc", "malformed chunk size"),
        (b"-1\r\n", "malformed chunk size"),
        (b"3\r\nabcX\r\n", "malformed chunk"),
        (b"3\nabc\r\n", "malformed chunk"),
    ],
)
def test_malformed_chunk_framing_is_a_protocol_error(framing, message):
    with pytest.raises(httpx.RemoteProtocolError, match=f"^{message}$"):
        ChunkedDecoder().feed(framing)
