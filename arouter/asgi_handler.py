"""Django's ASGI handler, with two changes for the /v1 API.

No per-request thread: for every request Django opens a ThreadSensitiveContext, so the
request's synchronous work gets a thread of its own, made for it and discarded after.
Pages need that (sync views, sessions, WhiteNoise). The /v1 views are async end to end and
send their database work to kept threads (core.hot_path_db); their only synchronous step
is closing the response, and creating a thread for that alone was a fixed cost on every
API call. Without the context, that step runs on asgiref's one long-lived sync thread.

A body limit while reading: Django reads a whole body (spilling to a temporary file)
before any view can refuse it. Here a body declared or found larger than the API accepts is
answered 413 at once, without reading (or storing) the rest.

Multipart bodies Django cannot read are refused with a reason (core.multipart): a
Content-Type without a usable boundary, a file part whose name Django cannot read.
"""

import json

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.http.multipartparser import MultiPartParser
from django.utils.datastructures import ImmutableList

from core.api_requests import API_PREFIX, new_request_id
from core.errors import request_too_large
from core.multipart import refuse_bad_boundary, refuse_dropped_file_parts


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
    body = json.dumps(request_too_large(limit).body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", new_request_id().encode()),
        # The client may still be sending: closing after the answer spares reading the rest.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GatewayRequest(ASGIRequest):
    def parse_file_upload(self, META, post_data):
        boundary = self.content_params.get("boundary") or ""
        refuse_bad_boundary(boundary, META.get("CONTENT_TYPE", ""))
        # As HttpRequest.parse_file_upload, keeping the parser for its file-name check.
        self.upload_handlers = ImmutableList(self.upload_handlers)
        parser = MultiPartParser(META, post_data, self.upload_handlers, self.encoding)
        post, files = parser.parse()
        if not files and self.path.startswith(API_PREFIX):
            # Only on this refusal path: read the body again to say what was wrong with it.
            source = self._stream if post_data is self else post_data
            source.seek(0)
            refuse_dropped_file_parts(
                source.read(), boundary.encode("ascii"), parser.sanitize_file_name
            )
        return post, files


class GatewayASGIHandler(ASGIHandler):
    request_class = GatewayRequest

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
