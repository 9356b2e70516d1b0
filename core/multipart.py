"""Multipart bodies Django cannot read, refused with a reason a client can act on.

Django raises a bare "Invalid boundary in multipart: None" for a Content-Type without a
usable boundary, and silently drops a file part whose name it cannot read (a header that
is not UTF-8, a name such as '..'), which a client would otherwise hear about as a missing
file. The API's request class (arouter.asgi_handler) calls these; the API renders
MalformedMultipart as a 400 naming the part.
"""

from collections.abc import Callable

from django.http.multipartparser import MultiPartParser, MultiPartParserError
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
