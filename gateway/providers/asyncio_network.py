"""An httpcore network backend on plain asyncio streams, for upstreams on plain HTTP.

httpcore reaches sockets through anyio. On every request its pool asks each idle connection
whether the server closed it, and anyio answers by rebuilding a table of socket attributes
and polling the socket: with sixteen kept-alive connections that was a fifth of the event
loop's time under load in bench/overhead.py. asyncio already reads every connection in the
background, so here the answer is two attribute reads; reads and writes skip anyio's cancel
scopes too. TLS upstreams keep httpcore's own backend, the well-trodden path for
certificates and handshakes, and where the network, not the gateway, is the cost.
"""

# httpcore's interface passes timeouts as arguments (ASYNC109 wants them as scopes).
# ruff: noqa: ASYNC109

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Iterable
from typing import Any

import httpcore
import httpx

# Read buffer per connection before asyncio pauses reading (it only bounds memory).
READ_LIMIT = 1 << 20
SocketOption = tuple[int, int, int | bytes] | tuple[int, int, None, int]


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("timed out reading from the upstream") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            transport = self._writer.transport
            if not transport.is_closing() and not transport.get_write_buffer_size():
                return  # all in the socket already: nothing to wait for (or time)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out writing to the upstream") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):  # the peer reset it first: closed either way
            await self._writer.wait_closed()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("this backend serves plain-HTTP upstreams only")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle connection with bytes or EOF pending was closed by the server.
            return self._reader.at_eof() or self._writer.is_closing()
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return None


async def _connect(
    opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    timeout: float | None,
    options: Iterable[SocketOption] | None,
) -> AsyncioStream:
    """Await a connection, with httpcore's errors for a timeout or a refusal."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout("timed out connecting to the upstream") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    sock: socket.socket = writer.get_extra_info("socket")
    for option in options or ():
        sock.setsockopt(*option)
    return AsyncioStream(reader, writer)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        opening = asyncio.open_connection(host, port, local_addr=local, limit=READ_LIMIT)
        return await _connect(opening, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        opening = asyncio.open_unix_connection(path, limit=READ_LIMIT)
        return await _connect(opening, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def transport_for(base_url: str, *, http2: bool, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport; for a plain-HTTP upstream, its pool runs on AsyncioBackend."""
    transport = httpx.AsyncHTTPTransport(http2=http2, limits=limits)
    if httpx.URL(base_url).scheme == "http":
        # httpx has no parameter for the network backend: rebuild its pool with the same
        # settings plus ours (tests/test_asyncio_network.py checks this stays in effect).
        transport._pool = httpcore.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=AsyncioBackend(),
        )
    return transport
