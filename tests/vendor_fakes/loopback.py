"""A vendor's HTTP API on loopback, for the provider tests and the adapter bench.

A raw ASGI app under uvicorn in a background thread: real sockets, keep-alive, and bodies
sent as the vendor sends them (a whole JSON body with its length, or chunked pieces as
they are made). A fake is one async handler, `Request -> Response`; every request is
kept in `requests` so tests can check what the adapter sent.
"""

import asyncio
import email.parser
import email.policy
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn


@dataclass
class Upload:
    filename: str
    content: bytes
    content_type: str


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def form(self) -> tuple[dict[str, list[str]], dict[str, Upload]]:
        """A multipart/form-data body: its fields, and its files by field name."""
        head = f"Content-Type: {self.headers.get('content-type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        fields: dict[str, list[str]] = {}
        files: dict[str, Upload] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition") or ""
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                files[name] = Upload(part.get_filename(), payload, part.get_content_type())
            else:
                fields.setdefault(name, []).append(payload.decode())
        return fields, files


@dataclass
class Response:
    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), "application/json", headers or {})


Handler = Callable[[Request], Awaitable[Response]]


class LoopbackServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._app, interface="asgi3", log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoopbackServer":
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    async def _app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(scope["query_string"].decode()),
            headers=headers,
            body=bytes(body),
        )
        self.requests.append(request)
        response = await self.handler(request)
        await self._send(response, send)

    async def _send(self, response: Response, send: Callable) -> None:
        head = [(b"content-type", response.content_type.encode())]
        head += [(k.encode(), v.encode()) for k, v in response.headers.items()]
        if isinstance(response.body, bytes):
            head.append((b"content-length", str(len(response.body)).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": head})
            await send({"type": "http.response.body", "body": response.body})
            return
        # No length: uvicorn sends each piece as an HTTP/1.1 chunk the moment it is made.
        await send({"type": "http.response.start", "status": response.status, "headers": head})
        async for piece in response.body:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
