"""multipart/form-data bodies built in one join.

httpx's multipart encoder streams every part through a generator of small writes, about a
millisecond per 300 KB upload; a gateway already holds the whole file, so one bytes join
(and one send) does the same work in a fraction of that.
"""

import secrets
from collections.abc import Mapping

from gateway.providers.base import AudioUpload

FieldValue = str | list[str]


def _quoted(value: str) -> str:
    # RFC 7578 §4.2: names and filenames are quoted strings; escape what would end them.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode(fields: Mapping[str, FieldValue], file: AudioUpload) -> tuple[bytes, str]:
    """The body and its Content-Type for form `fields` plus `file` as the `file` part."""
    boundary = secrets.token_hex(16)
    delimiter = f"--{boundary}\r\n".encode()
    parts: list[bytes] = []
    for name, value in fields.items():
        for item in [value] if isinstance(value, str) else value:
            parts += [
                delimiter,
                f'Content-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode(),
                item.encode(),
                b"\r\n",
            ]
    file_header = (
        f'Content-Disposition: form-data; name="file"; filename="{_quoted(file.filename)}"\r\n'
        f"Content-Type: {file.content_type or 'application/octet-stream'}\r\n\r\n"
    )
    parts += [delimiter, file_header.encode(), file.read(), f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
