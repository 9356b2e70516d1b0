"""An upload sent to a vendor as multipart/form-data, in as few socket writes as it can be.

httpx's encoder (`data=`, `files=`) hands its connection every part's header, value and
separator as a piece of its own, and each piece is a socket write: about twenty writes for
a transcription of one file and four fields, each waking the vendor's server. Here the form
is built once with its length known: an upload held in memory is one body, a spilled one is
its fields, then its file in large reads, then the closing boundary.

The encoding is httpx's (and so the SDKs'): names and file names escaped as HTML5 forms
escape them, one part per item of a list value.
"""

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.providers.base import AudioUpload

FieldValue = str | Sequence[str]
# Large reads of a spilled upload: one write each (the socket buffer takes what it can).
FILE_READ_BYTES = 1 << 20

_ESCAPES = {'"': "%22", "\\": "\\\\"} | {chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}
_ESCAPED = re.compile("|".join(re.escape(c) for c in _ESCAPES))


def _quoted(value: str) -> str:
    return '"' + _ESCAPED.sub(lambda match: _ESCAPES[match.group(0)], value) + '"'


def _field_parts(boundary: str, fields: Mapping[str, FieldValue]) -> list[str]:
    parts = []
    for name, value in fields.items():
        for item in [value] if isinstance(value, str) else value:
            parts.append(
                f"--{boundary}\r\nContent-Disposition: form-data; name={_quoted(name)}"
                f"\r\n\r\n{item}\r\n"
            )
    return parts


@dataclass(frozen=True)
class FormUpload:
    """A form of text fields and one uploaded file, ready to send (and to resend on a
    retry: each send reads a spilled file from its start)."""

    fields: Mapping[str, FieldValue]
    upload: AudioUpload
    file_field: str = "file"
    boundary: str = field(default_factory=lambda: secrets.token_hex(16))

    def _head(self) -> bytes:
        upload = self.upload
        file_part = (
            f"--{self.boundary}\r\nContent-Disposition: form-data; "
            f"name={_quoted(self.file_field)}; filename={_quoted(upload.filename)}\r\n"
            f"Content-Type: {upload.content_type or 'application/octet-stream'}\r\n\r\n"
        )
        return "".join([*_field_parts(self.boundary, self.fields), file_part]).encode()

    def _tail(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode()

    def request_kwargs(self) -> dict:
        """`content` and `headers` for an httpx request that sends this form."""
        head, tail = self._head(), self._tail()
        content: bytes | _SpilledBody
        if self.upload.path is None:
            content = b"".join((head, self.upload.content, tail))
        else:
            content = _SpilledBody(head, self.upload.path, tail)
        length = len(content) if isinstance(content, bytes) else content.length
        headers = {
            "content-type": f"multipart/form-data; boundary={self.boundary}",
            "content-length": str(length),
        }
        return {"content": content, "headers": headers}


class _SpilledBody:
    """The form around a file on disk, read afresh each time it is sent."""

    def __init__(self, head: bytes, path: str, tail: bytes) -> None:
        self.head, self.path, self.tail = head, path, tail
        self.length = len(head) + os.path.getsize(path) + len(tail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        # Read off the event loop: a spilled upload is up to the upload limit, from disk.
        file = await asyncio.to_thread(open, self.path, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, FILE_READ_BYTES):
                yield chunk
        finally:
            file.close()
        yield self.tail
