"""The asyncio network backend under httpx, against a real HTTP server on loopback."""

import asyncio
import socket

import httpx
import pytest

from gateway.providers.asyncio_network import AsyncioBackend, transport_for

LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)


class LoopbackServer:
    """Answers `GET /<n>` with n bytes; `/close` answers then closes; `/slow` never answers."""

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
                path = head.split(b" ", 2)[1].decode()
                if path == "/slow":
                    await asyncio.sleep(30)
                body = b"x" * int(path[1:]) if path[1:].isdigit() else b"bye"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if path == "/close":
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def client(base_url: str, **timeouts) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(5, **timeouts),
        transport=transport_for(base_url, http2=False, limits=LIMITS),
    )


def test_plain_http_upstreams_use_the_asyncio_backend_and_tls_ones_do_not():
    plain = transport_for("http://127.0.0.1:9/v1", http2=False, limits=LIMITS)
    tls = transport_for("https://api.example.com/v1", http2=False, limits=LIMITS)

    assert isinstance(plain._pool._network_backend, AsyncioBackend)
    assert not isinstance(tls._pool._network_backend, AsyncioBackend)
    assert plain._pool._max_connections == LIMITS.max_connections


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
