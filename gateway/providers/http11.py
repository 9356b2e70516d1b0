"""An httpx transport for upstreams on plain HTTP: HTTP/1.1 on asyncio streams, pooled.

httpx's own transport goes through httpcore: a connection pool with its request queue, an
h11 state machine fed event by event, trace hooks and anyio cancel scopes, on every
request. For an upstream on loopback or a private network that was most of the upstream
call's cost to the gateway (bench/overhead.py vendors). This transport speaks HTTP/1.1
itself: a request's head and a body held in memory go out in one write, a response's head
is read with one `readuntil`, and its body is framed by Content-Length, chunked encoding or
the end of the connection. It answers with httpx Responses and fails with httpx's
exceptions (ConnectError, ReadTimeout, RemoteProtocolError, ...), so retries, error mapping
and event-stream reading above it are unchanged. TLS upstreams keep httpx's own transport:
certificates and handshakes are where the well-trodden path matters, and there the
network, not the gateway, is the cost.
"""

# httpx hands each phase its own timeout (connect, write, read) with the request: they are
# passed down as arguments rather than as one scope (ASYNC109 wants scopes).
# ruff: noqa: ASYNC109

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator

import httpx

# Read buffer per connection before asyncio pauses reading (it only bounds memory); also
# the longest response head accepted.
READ_LIMIT = 1 << 20
READ_BYTES = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})


class Connection:
    """One kept-alive connection to an upstream."""

    def __init__(
        self, origin: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.origin = origin  # (host, port): the pool it goes back to
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, expiry: float) -> bool:
        """Whether an idle connection can carry another request: the server has not
        closed it (asyncio reads every connection in the background) nor let it expire."""
        fresh = time.monotonic() - self.idle_since < expiry
        return fresh and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class Http11Transport(httpx.AsyncBaseTransport):
    """Pooled HTTP/1.1 connections per host and port; `limits` as httpx's transport reads
    them (connections in all, kept-alive ones, and how long one stays idle)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.max_connections or 1 << 30)
        self._idle: dict[tuple[str, int], deque[Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        await self._slot(timeouts.get("pool"))
        connection: Connection | None = None
        try:
            connection = await self._connection(request, timeouts.get("connect"))
            await _send(connection, request, timeouts.get("write"))
            return await self._response(connection, request, timeouts.get("read"))
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise

    async def _slot(self, timeout: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: taken at once, with no timer to set and cancel
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection came free in time") from None

    async def _connection(self, request: httpx.Request, timeout: float | None) -> Connection:
        origin = (request.url.host, request.url.port or 80)
        idle = self._idle.get(origin)
        expiry = self._limits.keepalive_expiry or 0.0
        while idle:
            connection = idle.pop()
            if connection.usable(expiry):
                return connection
            connection.close()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(*origin, limit=READ_LIMIT)
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting to the upstream") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return Connection(origin, reader, writer)

    async def _response(
        self, connection: Connection, request: httpx.Request, timeout: float | None
    ) -> httpx.Response:
        while True:
            status, reason, headers, keep_alive = await _read_head(connection, timeout)
            if status >= 200 or status == 101:
                break  # 1xx informational answers (100 Continue, 103) come before the real one
        body = _Body(self, connection, request, status, headers, keep_alive, timeout)
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": reason}
        return httpx.Response(status, headers=headers, stream=body, extensions=extensions)

    def _finished(self, connection: Connection, reusable: bool) -> None:
        """A response's body is read (or abandoned): keep its connection or close it."""
        idle = self._idle.setdefault(connection.origin, deque())
        if reusable and len(idle) < (self._limits.max_keepalive_connections or 1 << 30):
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


# --- writing a request ------------------------------------------------------------------------


def _head(request: httpx.Request) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    lines += [b"%s: %s" % (name, value) for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _send(connection: Connection, request: httpx.Request, timeout: float | None) -> None:
    writer = connection.writer
    try:
        body: bytes | None = request.content
    except httpx.RequestNotRead:
        body = None  # a streamed body
    try:
        if body is not None:
            writer.writelines([_head(request), body])
            await _drain(writer, timeout)
            return
        writer.write(_head(request))
        chunked = "content-length" not in request.headers
        async for piece in request.stream:
            if piece:
                writer.writelines([b"%x\r\n" % len(piece), piece, b"\r\n"] if chunked else [piece])
                await _drain(writer, timeout)
        if chunked:
            writer.write(b"0\r\n\r\n")
        await _drain(writer, timeout)
    except OSError:
        # The server stopped reading (it may have answered early, say with a 413): as
        # httpcore does, its answer is read rather than this error raised.
        pass


async def _drain(writer: asyncio.StreamWriter, timeout: float | None) -> None:
    transport = writer.transport
    if not transport.is_closing() and not transport.get_write_buffer_size():
        return  # all in the socket already: nothing to wait for (or time)
    try:
        async with asyncio.timeout(timeout):
            await writer.drain()
    except TimeoutError:
        raise httpx.WriteTimeout("timed out writing to the upstream") from None


# --- reading a response ---------------------------------------------------------------------


async def _read(awaitable, timeout: float | None):
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        raise httpx.ReadTimeout("timed out reading from the upstream") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete message."
            ) from None
        raise httpx.RemoteProtocolError("peer closed connection mid-message") from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("the upstream's response head is too large") from None
    except OSError as exc:  # reset by the peer
        raise httpx.ReadError(str(exc)) from exc


async def _read_head(
    connection: Connection, timeout: float | None
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    """(status, reason, headers, whether the connection stays open) of the next response."""
    raw = await _read(connection.reader.readuntil(b"\r\n\r\n"), timeout)
    status_line, *lines = raw[:-4].split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:].isspace() or line[:1].isspace():
            raise httpx.RemoteProtocolError(f"malformed response header {line[:80]!r}")
        headers.append((name, value.strip()))
    tokens = b",".join(v for n, v in headers if n.lower() == b"connection").lower()
    keep_alive = b"close" not in tokens and (version == b"HTTP/1.1" or b"keep-alive" in tokens)
    return int(code), reason, headers, keep_alive


class _Body(httpx.AsyncByteStream):
    """A response's body as it arrives, framed as its headers say."""

    def __init__(
        self,
        transport: Http11Transport,
        connection: Connection,
        request: httpx.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._connection = connection
        self._timeout = timeout
        self._complete = False
        self._closed = False
        fields = {name.lower(): value for name, value in headers}
        self._chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        self._length: int | None = None
        self._reusable = keep_alive
        if request.method == "HEAD" or status in NO_BODY_STATUSES or status < 200:
            self._length = 0
            self._reusable = keep_alive and status >= 200  # not after 101 Switching Protocols
        elif not self._chunked and b"content-length" in fields:
            try:
                self._length = int(fields[b"content-length"])
            except ValueError:
                raise httpx.RemoteProtocolError("malformed Content-Length") from None
        elif not self._chunked:
            self._reusable = False  # the body ends when the server closes the connection

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces = self._chunks() if self._chunked else self._sized()
        async for piece in pieces:
            yield piece
        self._complete = True
        await self.aclose()

    async def _sized(self) -> AsyncIterator[bytes]:
        reader, left = self._connection.reader, self._length
        while left is None or left > 0:
            size = READ_BYTES if left is None else min(left, READ_BYTES)
            piece = await _read(reader.read(size), self._timeout)
            if not piece:
                if left is None:
                    return  # the connection's end is the body's end
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
            if left is not None:
                left -= len(piece)
            yield piece

    async def _chunks(self) -> AsyncIterator[bytes]:
        reader, decoder = self._connection.reader, ChunkedDecoder()
        while not decoder.done:
            data = await _read(reader.read(READ_BYTES), self._timeout)
            if not data:
                raise httpx.RemoteProtocolError("peer closed connection mid-chunk")
            if payload := decoder.feed(data):
                yield payload
        if decoder.leftover:
            self._reusable = False  # bytes past the body's end: no answer to a request of ours

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._transport._finished(self._connection, self._complete and self._reusable)


class ChunkedDecoder:
    """Chunked transfer coding, decoded from bytes as reads deliver them.

    `feed()` returns the payload of every chunk (or part of one) in what it is given: the
    chunks an upstream wrote together are passed on as one piece, so a relay writes once
    where it would have written each (an upstream streaming small chunks cost a write per
    chunk), and a chunk is never held for its end. Size lines and trailers are read and
    their framing checked; chunk extensions and trailers are dropped.
    """

    def __init__(self) -> None:
        self._state = "size"  # then "data", "data end", "size" ... "trailers", "done"
        self._line = b""  # a line not yet ended by the bytes fed so far
        self._left = 0  # payload bytes the current chunk still owes
        self.leftover = b""  # bytes fed after the body's end

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        payload: list[bytes] = []
        at = 0
        while at < len(data) and self._state != "done":
            if self._state == "data":
                taken = data[at : at + self._left]
                payload.append(taken)
                at += len(taken)
                self._left -= len(taken)
                if not self._left:
                    self._state = "data end"
                continue
            end = data.find(b"\n", at)
            if end == -1:
                self._line += data[at:]
                if len(self._line) > READ_LIMIT:
                    raise httpx.RemoteProtocolError("the upstream's chunk framing is too long")
                break
            line, self._line = self._line + data[at:end], b""
            at = end + 1
            self._read_line(line)
        if self._state == "done":
            self.leftover = data[at:]
        return b"".join(payload)

    def _read_line(self, line: bytes) -> None:
        if not line.endswith(b"\r"):
            raise httpx.RemoteProtocolError("malformed chunk")
        line = line[:-1]
        if self._state == "data end":
            if line:
                raise httpx.RemoteProtocolError("malformed chunk")
            self._state = "size"
        elif self._state == "size":
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx.RemoteProtocolError("malformed chunk size") from None
            if size < 0:
                raise httpx.RemoteProtocolError("malformed chunk size")
            self._state, self._left = ("data", size) if size else ("trailers", 0)
        elif not line:  # trailers end with an empty line
            self._state = "done"


def transport_for(base_url: str, *, http2: bool, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """The transport for an upstream: this module's on plain HTTP (where httpcore would
    speak HTTP/1.1 too: it offers HTTP/2 only through TLS), httpx's own over TLS."""
    if httpx.URL(base_url).scheme == "http":
        return Http11Transport(limits)
    return httpx.AsyncHTTPTransport(http2=http2, limits=limits)
