"""Django's ASGI handler, with two changes for the /v1 API.

No per-request thread: for every request Django opens a ThreadSensitiveContext, so the
request's synchronous work gets a thread of its own, made for it and discarded after.
Pages need that (sync views, sessions, WhiteNoise). The /v1 views are async end to end and
send their database work to kept threads (arouter.hot_path_db); their only synchronous step
is closing the response, and creating a thread for that alone was a fixed cost on every
API call. Without the context, that step runs on asgiref's one long-lived sync thread.

A body limit while reading: Django reads a whole body (spilling to a temporary file)
before any view can refuse it. Here a body declared or found larger than the API accepts is
answered 413 at once, without reading (or storing) the rest.
"""

import json

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from gateway.middleware import new_request_id

API_PREFIX = "/v1/"


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def max_body_bytes() -> int:
    """The largest /v1 body: an upload at the limit, base64-encoded in JSON, plus framing
    (read at each request, so a changed upload limit applies at once)."""
    return settings.AROUTER_MAX_UPLOAD_BYTES * 4 // 3 + 1024 * 1024


class BodyLimit:
    """Passes a request's messages on until its body grows past `limit` bytes, then says
    the client left (which ends Django's reading) and remembers why."""

    def __init__(self, receive, limit: int) -> None:
        self._receive = receive
        self.limit = limit
        self.seen = 0
        self.exceeded = False

    async def receive(self) -> dict:
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message


async def send_too_large(send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "message": f"Request body too large: the limit is {limit} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_too_large",
            }
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", new_request_id().encode()),
        # The client may still be sending: closing after the answer spares reading the rest.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GatewayASGIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await super().__call__(scope, receive, send)
            return
        limit = max_body_bytes()
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await send_too_large(send, limit)
            return
        guard = BodyLimit(receive, limit)
        await self.handle(scope, guard.receive, send)
        if guard.exceeded:
            await send_too_large(send, limit)


def get_gateway_asgi_application() -> GatewayASGIHandler:
    """get_asgi_application(), with the handler above."""
    django.setup(set_prefix=False)
    return GatewayASGIHandler()
