"""Django's ASGI handler, with two changes for the /v1 API.

No thread hops for /v1: for every request Django opens a ThreadSensitiveContext, so the
request's synchronous work gets a thread of its own, made for it and discarded after, and
it sends `request_started` and `request_finished` there. Pages need that (sync views,
sessions, WhiteNoise). The /v1 views are async end to end and send their database work to
kept threads (core.hot_path_db), so their request is served on the event loop alone, and
neither signal is sent: their receivers reset query logs, close stale connections and
caches, and reset the urlconf, none of which the loop thread holds. Each hop was a thread
wake-up on every API call, and the signals a tenth of a millisecond more.

A body limit while reading: Django reads a whole body (spilling to a temporary file)
before any view can refuse it. Here a body declared or found larger than the API accepts is
answered 413 at once, without reading (or storing) the rest.

Multipart bodies Django cannot read are refused with a reason (core.multipart): a
Content-Type without a usable boundary, a file part whose name Django cannot read.
"""

import asyncio
import contextlib
import io
import json
import re
import tempfile

import django
from asgiref.sync import sync_to_async
from django.conf import global_settings, settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.http import HttpResponseBase
from django.http.multipartparser import MultiPartParser
from django.urls import set_script_prefix
from django.utils.datastructures import ImmutableList

from core.api_requests import API_PREFIX, new_request_id
from core.errors import request_too_large
from core.multipart import plain_form, refuse_bad_boundary, refuse_dropped_file_parts


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


# The Content-Type the SDKs send with an upload: a boundary of plain characters (RFC 2046's
# but the space and '='), unquoted. Any other value is read by Django.
_PLAIN_MULTIPART = re.compile(
    r"\s*(multipart/form-data)\s*;\s*boundary=([0-9A-Za-z'()+_,\-./:?]{1,70})\s*", re.IGNORECASE
)


class GatewayRequest(ASGIRequest):
    def _set_content_type_params(self, meta) -> None:
        # Django reads every Content-Type with parameters through email.message: two thirds
        # of making an upload's request. The SDKs' plain header reads the same directly.
        match = _PLAIN_MULTIPART.fullmatch(meta.get("CONTENT_TYPE", ""))
        if match is None:
            super()._set_content_type_params(meta)
            return
        self.content_type, self.content_params = match[1].lower(), {"boundary": match[2]}

    def parse_file_upload(self, META, post_data):
        boundary = self.content_params.get("boundary") or ""
        refuse_bad_boundary(boundary, META.get("CONTENT_TYPE", ""))
        if (form := self._plain_form(boundary)) is not None:
            return form
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

    def _plain_form(self, boundary: str):
        """The form read by `core.multipart.plain_form` when Django's parser would keep it
        all in memory (the whole body within FILE_UPLOAD_MAX_MEMORY_SIZE, Django's own
        upload handlers); None: Django's parser reads it."""
        length = int(self.META.get("CONTENT_LENGTH") or 0)
        if not 0 < length <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
            return None
        if list(settings.FILE_UPLOAD_HANDLERS) != global_settings.FILE_UPLOAD_HANDLERS:
            return None
        return plain_form(self.body, boundary.encode("ascii"), self.encoding or "utf-8")


async def _closed(response: HttpResponseBase | None) -> None:
    """Close a /v1 response (None: the client left before one was made).

    With the queries on kept threads (core.hot_path_db) the loop holds no database
    connection and no urlconf of its own, and our cache backends' close does nothing, so
    `request_finished` (whose receivers close exactly those) is not sent: the response's
    own resources are released, as `HttpResponseBase.close()` releases them. Without kept
    threads (tests in a transaction) the queries ran where `sync_to_async` runs, and
    Django's full close runs there.
    """
    if not settings.AROUTER_DB_THREADS:
        await sync_to_async(response.close if response is not None else _finished)()
    elif response is not None:
        _release(response)


def _release(response: HttpResponseBase) -> None:
    # HttpResponseBase.close() up to its signal (Django 5.2; re-read it on upgrades).
    for closer in response._resource_closers:
        with contextlib.suppress(Exception):  # as Django's close: one failure stops none
            closer()
    response._resource_closers.clear()
    response.closed = True


def _finished() -> None:
    signals.request_finished.send(sender=GatewayASGIHandler)


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
        await self._handle_api(scope, guard.receive, send)
        if guard.exceeded:
            await send_too_large(send, limit)

    async def _handle_api(self, scope, receive, send) -> None:
        """Django's `handle`, on the event loop alone (see the module's docstring)."""
        try:
            body_file = await self._read_api_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        try:
            if request is None:
                await self.send_response(error_response, send)
                await _closed(error_response)
                return
            await _closed(await self._respond_unless_gone(request, receive, send))
        finally:
            body_file.close()

    async def _read_api_body(self, receive):
        """The body, as Django's `read_body` reads it, but kept as the pieces received and
        joined once while it fits in memory, rather than written into a spooled file and
        read back out (two copies of every upload); a larger body is spooled as Django
        spools it."""
        limit = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        pieces: list[bytes] = []
        size = 0
        spooled = None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if spooled is not None:
                    spooled.close()
                raise RequestAborted()
            if body := message.get("body"):
                size += len(body)
                if spooled is not None:
                    spooled.write(body)
                elif size > limit:
                    # Handed to the request, open; `_handle_api` closes it when it ends.
                    spooled = tempfile.SpooledTemporaryFile(max_size=limit, mode="w+b")  # noqa: SIM115
                    spooled.writelines([*pieces, body])
                    pieces = []
                else:
                    pieces.append(body)
            if not message.get("more_body", False):
                break
        if spooled is None:
            return io.BytesIO(b"".join(pieces))
        spooled.seek(0)
        return spooled

    async def _respond_unless_gone(self, request, receive, send) -> HttpResponseBase | None:
        """The response, sent; None if the client left first (the view is cancelled, as
        Django cancels it, so a stream stops making what nobody reads)."""

        async def respond() -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left mid-send
                await self.send_response(response, send)
            return response

        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        responding = asyncio.create_task(respond())
        await asyncio.wait((listening, responding), return_when=asyncio.FIRST_COMPLETED)
        for task in (listening, responding):
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await task
        return None if responding.cancelled() else responding.result()


def get_gateway_asgi_application() -> GatewayASGIHandler:
    """get_asgi_application(), with the handler above."""
    django.setup(set_prefix=False)
    return GatewayASGIHandler()
