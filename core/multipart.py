"""Multipart bodies Django cannot read, refused with a reason a client can act on.

Django raises a bare "Invalid boundary in multipart: None" for a Content-Type without a
usable boundary, and silently drops a file part whose name it cannot read (a header that
is not UTF-8, a name such as '..'), which a client would otherwise hear about as a missing
file. The API's request class (arouter.asgi_handler) calls these; the API renders
MalformedMultipart as a 400 naming the part.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO

from django.core.files.uploadedfile import InMemoryUploadedFile
from django.http import QueryDict
from django.http.multipartparser import (
    MAX_TOTAL_HEADER_SIZE,
    MultiPartParser,
    MultiPartParserError,
)
from django.utils.datastructures import MultiValueDict
from django.utils.http import parse_header_parameters


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


def refuse_bad_boundary(boundary: str, content_type: str) -> None:
    """The check Django's parser makes, with a message that says what to send."""
    if not MultiPartParser.boundary_re.fullmatch(boundary):
        raise MalformedMultipart(
            "Invalid Content-Type header: multipart/form-data needs a boundary parameter "
            f"(multipart/form-data; boundary=...); got {content_type!r}."
        )


# --- the plain forms SDKs send, read without Django's streaming parser ----------------------

# What the SDKs write: `form-data; name="..."` and, for a file, `; filename="..."`, with no
# character that Django's parser would unquote, decode or sanitize differently.
_DISPOSITION = re.compile(
    rb'form-data; name="([!#$\'()*+,\-.0-9:;<=>?@A-Z\[\]^_`a-z{|}~ ]+)"'
    rb'(?:; filename="([!#$\'()*+,\-.0-9:;<=>?@A-Z\[\]^_`a-z{|}~ ]+)")?'
)
_CONTENT_TYPE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
MAX_PLAIN_PARTS = 64
Form = tuple[QueryDict, MultiValueDict]  # request.POST, request.FILES


@dataclass(frozen=True)
class PlainPart:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str = ""


def _plain_part(part: bytes) -> PlainPart | None:
    # Django's parser looks for the end of a part's headers in its first bytes only.
    head_end = part.find(b"\r\n\r\n", 0, MAX_TOTAL_HEADER_SIZE)
    if head_end == -1:
        return None
    head, data = part[:head_end], part[head_end + 4 :]
    if not head.isascii():
        return None
    disposition = content_type = None
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        name, value = name.lower(), value.strip()
        if not colon:
            return None
        if name == b"content-disposition" and disposition is None:
            disposition = _DISPOSITION.fullmatch(value)
        elif name == b"content-type" and content_type is None and _CONTENT_TYPE.fullmatch(value):
            content_type = value.decode().lower()  # as Django's parser gives it
        else:
            return None  # a repeated or other header (Content-Transfer-Encoding, ...)
    if disposition is None:
        return None
    field, filename = disposition.group(1).decode().strip(), disposition.group(2)
    if filename is None:
        return PlainPart(field, data)
    filename = filename.decode()  # unstripped: Django keeps a file name's spaces
    if filename in (".", "..") or not data:
        return None  # Django drops the first and keeps an empty file: its parser decides
    return PlainPart(field, data, filename, content_type or "")


def plain_form_parts(body: bytes, boundary: bytes) -> list[PlainPart] | None:
    """The parts of a multipart body in the plain shape the SDKs send, or None for anything
    else (quoted or non-ASCII names, other part headers, an epilogue): those go to Django's
    parser, whose reading this gives for the plain shape at a fraction of its cost."""
    delimiter = b"--" + boundary
    closing = b"\r\n" + delimiter + b"--\r\n"
    if not body.startswith(delimiter + b"\r\n") or not body.endswith(closing):
        return None
    inner = body[len(delimiter) + 2 : -len(closing)]
    pieces = inner.split(b"\r\n" + delimiter + b"\r\n")
    if len(pieces) > MAX_PLAIN_PARTS or inner.count(b"\r\n" + delimiter) != len(pieces) - 1:
        return None  # a delimiter not followed by a line break: Django's parser decides
    parts = [_plain_part(piece) for piece in pieces]
    return None if any(part is None for part in parts) else parts  # type: ignore[return-value]


def plain_form(body: bytes, boundary: bytes, encoding: str) -> Form | None:
    """`request.POST` and `request.FILES` of a plain multipart body held in memory, as
    Django's parser and its in-memory upload handler make them; None: let Django parse it."""
    parts = plain_form_parts(body, boundary)
    if parts is None:
        return None
    post, files = QueryDict(mutable=True, encoding=encoding), MultiValueDict()
    for part in parts:
        if part.filename is None:
            try:
                post.appendlist(part.name, part.data.decode(encoding))
            except UnicodeDecodeError:
                return None  # Django reads it with replacement characters
            continue
        upload = InMemoryUploadedFile(
            BytesIO(part.data), part.name, part.filename, part.content_type, len(part.data),
            None, {},
        )  # fmt: skip
        files.appendlist(part.name, upload)
    post._mutable = False
    return post, files
