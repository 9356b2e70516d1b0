"""How ARouter is served: uvicorn's options in one place, and its HTTP protocol with bounds.

`make serve` runs `python -m arouter.http_server`, and the tests' live server passes the
same UVICORN_OPTIONS to uvicorn.Config, so both serve with the same protocol and timeouts.

uvicorn's httptools protocol (the fast one) accepts a request head of any size: httptools
gathers each header's pieces in memory until the line ends, so a client that never ends one
grows the process without bound (four connections sending 32 MiB each added 190 MB). It
also gives a connection no deadline before its first request or while a head or body
trickles in. BoundedHttpToolsProtocol adds, without changing the parser:

- a head limit: past MAX_HEAD_BYTES of request line and headers the client gets 431 and
  the connection is closed, without reading further;
- an idle limit before the first request (uvicorn's keep-alive timeout covers the others);
- a deadline for a whole request head, so a head sent a byte at a time cannot hold on;
- an idle limit while a body is read: a body that stops arriving closes the connection
  (the application sees the client leave).

It also sends a response's head with its first piece of body (HeadWithBody), where uvicorn
writes each on its own.
"""

import argparse
import asyncio
import json

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Twice h11's and Node's 16 KiB: room for cookie-heavy browsers, far from memory trouble.
MAX_HEAD_BYTES = 32 * 1024
HEAD_TIMEOUT = 20.0  # seconds from a head's first byte to its end
BODY_IDLE_TIMEOUT = 60.0  # seconds without a byte while the body is being read
# After the 431, stop reading and close shortly after, so the client can read the answer
# (closing at once with unread input would reset the connection and lose it).
REFUSAL_LINGER = 1.0
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")

UVICORN_OPTIONS: dict = {
    "http": "arouter.http_server:BoundedHttpToolsProtocol",
    "timeout_keep_alive": 5,
    "timeout_graceful_shutdown": 5,
    "access_log": False,
}


def _refusal_431() -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": "Request header fields too large: the request line and headers "
                f"may be at most {MAX_HEAD_BYTES} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_header_fields_too_large",
            }
        }
    ).encode()
    head = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return head + body


class HeadWithBody:
    """A connection's transport as one response cycle writes to it: the response head
    waits for the rest of the loop iteration, and a body piece written in that time goes
    out with it, in one write.

    uvicorn writes a head the moment the application starts its response, and each body
    piece after: two writes (two segments, two wake-ups of the client) for every answer,
    though Django sends a whole answer's head and body back to back, and our streams
    start with a piece already made. A head with no body yet still leaves before the loop
    waits for anything. Writes before the head (100 Continue) pass straight through.
    """

    def __init__(self, transport: asyncio.Transport, cycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head_seen = False
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.writelines((held, data))
        elif not self._head_seen and self._cycle.response_started:
            self._head_seen = True  # the first write once the response started is its head
            self._held = data
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head size limit and read timeouts (see above)."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT
    body_idle_timeout = BODY_IDLE_TIMEOUT

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # "idle": between requests; "head": a head is arriving; "body": its body is;
        # "app": the request is whole and the application has it; then "refused" or
        # "upgraded" (a websocket, no longer ours) for good.
        self._phase = "idle"
        self._head_bytes = 0
        self._head_tail = b""  # the head's last bytes, to find an end split across reads
        self._read_timer: asyncio.TimerHandle | None = None
        self._timing = ""  # the phase the timer is for

    # --- timers: set after each read, so a request read at once costs none -------------

    def _time_phase(self) -> None:
        if self._phase == "head" and self._timing != "head":
            self._arm(self.head_timeout)  # a deadline for the whole head, not per read
        elif self._phase == "body":
            self._arm(self.body_idle_timeout)
        elif self._phase not in ("head", "body"):
            self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out)
        self._timing = self._phase

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
            self._timing = ""

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self._phase == "body" and self.flow.read_paused:
            # We stopped reading (the application is behind): not the client's delay.
            self._arm(self.body_idle_timeout)
            return
        if self._phase != "body" and self._responding():
            # A slow pipelined head never cuts short the answer being sent; judged after.
            self._arm(self.head_timeout)
            return
        if not self.transport.is_closing():
            self.transport.close()

    # --- protocol -------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # uvicorn times out idle connections only after a response; this covers the first.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "refused":
            return
        if self._phase in ("idle", "app"):  # after a request's end, a new head begins
            self._phase = "head"
            self._head_bytes = 0
            self._head_tail = b""
        if self._phase == "head" and not self._head_fits(data):
            self._refuse_head()
            return
        super().data_received(data)
        self._time_phase()

    def _head_fits(self, data: bytes) -> bool:
        """Whether the head, with `data`, stays within the limit (its end may be in `data`,
        the rest then being body, which the limit does not count)."""
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._head_tail = (self._head_tail + data)[-3:]
            return True
        probe = self._head_tail + data
        limit = len(self._head_tail) + room
        return any(probe.find(end, 0, limit) != -1 for end in _HEAD_ENDS)

    def _refuse_head(self) -> None:
        self._phase = "refused"
        self._disarm()
        self._unset_keepalive_if_required()
        if self._responding():  # a pipelined head: an answer now would tear the one underway
            self.transport.close()
            return
        self.transport.write(_refusal_431())
        self.transport.pause_reading()
        self.loop.call_later(REFUSAL_LINGER, self.transport.close)

    def on_headers_complete(self) -> None:
        self._phase = "body"
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle:  # a new request's cycle (not an upgrade to websocket)
            self.cycle.transport = HeadWithBody(self.transport, self.cycle)

    def on_message_complete(self) -> None:
        self._phase = "app"
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._phase == "app":
            self._phase = "idle"
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        # The websocket protocol owns the connection from here: no HTTP read deadlines.
        self._phase = "upgraded"
        self._disarm()
        super().handle_websocket_upgrade()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve ARouter under uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    uvicorn.run(
        "arouter.asgi:application",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
