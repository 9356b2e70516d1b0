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

Multipart bodies Django cannot read are refused with a reason: Django raises a bare
"Invalid boundary" for a Content-Type without a usable boundary, and silently drops a file
part whose name it cannot read (a header that is not UTF-8, a name such as '..'), which a
client would otherwise hear about as a missing file.
"""

import json
from collections.abc import Callable

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.utils.datastructures import ImmutableList
from django.utils.http import parse_header_parameters

from core.api_requests import API_PREFIX, new_request_id
from core.errors import request_too_large


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


class MalformedMultipart(MultiPartParserError):
    """A multipart body refused with a message meant for the client, naming the part."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _dropped_file_part(
    head: bytes, sanitize: Callable[[str], str | None]
) -> MalformedMultipart | None:
    """Why Django dropped the part with these headers, if its file name is the reason."""
    for line in head.split(b"\r\n"):
        if line[:20].lower() != b"content-disposition:":
            continue
        try:
            # latin-1 reads any bytes, so the part's name can be given back whatever it holds.
            _, params = parse_header_parameters(line.decode("latin-1"))
        except ValueError:
            return None
        name, filename = params.get("name"), params.get("filename")
        if not name or not filename:
            return None
        try:
            line.decode()
        except UnicodeDecodeError:
            return MalformedMultipart(
                f"Invalid file name for '{name}': the part's Content-Disposition header is "
                "not UTF-8. Send the file name in UTF-8 (or as filename*=UTF-8''...).",
                param=name,
            )
        if sanitize(filename) is not None:
            return None  # a readable name: the part was dropped for another reason
        return MalformedMultipart(
            f"Invalid file name for '{name}': {filename!r} names no file. Send the upload "
            "with a file name such as 'speech.wav'.",
            param=name,
        )
    return None


def refuse_dropped_file_parts(
    body: bytes, boundary: bytes, sanitize: Callable[[str], str | None]
) -> None:
    """Raise for the first part whose file name Django could not read (and so dropped).

    Called only when Django found no file at all; `sanitize` is Django's file-name check."""
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    while start != -1:
        head_start = start + len(delimiter) + 2  # past the delimiter's line break
        head_end = body.find(b"\r\n\r\n", head_start)
        if head_end == -1:
            return
        if (refusal := _dropped_file_part(body[head_start:head_end], sanitize)) is not None:
            raise refusal
        start = body.find(b"\r\n" + delimiter, head_end)
        start = start + 2 if start != -1 else -1


class GatewayRequest(ASGIRequest):
    def parse_file_upload(self, META, post_data):
        boundary = self.content_params.get("boundary") or ""
        if not MultiPartParser.boundary_re.fullmatch(boundary):
            raise MalformedMultipart(
                "Invalid Content-Type header: multipart/form-data needs a boundary parameter "
                "(multipart/form-data; boundary=...); got "
                f"{META.get('CONTENT_TYPE', '')!r}."
            )
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
