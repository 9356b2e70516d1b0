"""core.multipart's plain-form reader: for the bodies the SDKs send it gives what Django's
parser gives, and it leaves every other body to Django's parser."""

import io

import httpx
import pytest
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http.multipartparser import MultiPartParser

from core.multipart import plain_form

BOUNDARY = "b0undary7MA4YWxkTrZu0gW"
AUDIO = b"RIFF\x00\x01\r\n--not-the-boundary\r\n" + bytes(range(256)) * 8


def body_of(*parts: bytes, end: bytes = b"--\r\n") -> bytes:
    delimiter = f"--{BOUNDARY}".encode()
    return b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + end


def field(name: bytes, value: bytes) -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value


def file_part(name: bytes = b"file", filename: bytes = b"speech.wav", data: bytes = AUDIO):
    return (
        b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"'
        b"\r\nContent-Type: audio/wav\r\n\r\n" + data
    )


def django_reads(body: bytes, boundary: str = BOUNDARY):
    meta = {
        "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
        "CONTENT_LENGTH": str(len(body)),
    }
    handlers = [MemoryFileUploadHandler()]
    return MultiPartParser(meta, io.BytesIO(body), handlers, "utf-8").parse()


def as_plain_data(form):
    post, files = form
    return (
        {key: post.getlist(key) for key in post},
        {
            key: [(f.name, f.content_type, f.size, f.read(), f.charset) for f in files.getlist(key)]
            for key in files
        },
    )


def sdk_body() -> tuple[bytes, str]:
    """The body openai-python sends for a transcription (it encodes forms with httpx)."""
    request = httpx.Request(
        "POST",
        "http://gateway/v1/audio/transcriptions",
        data={"model": "whisper-1", "timestamp_granularities[]": ["word", "segment"]},
        files={"file": ("speech.wav", AUDIO, "audio/wav")},
    )
    boundary = request.headers["content-type"].split("boundary=")[1]
    return request.read(), boundary


def test_the_python_sdks_form_is_read_as_django_reads_it():
    body, boundary = sdk_body()

    plain = plain_form(body, boundary.encode(), "utf-8")

    assert plain is not None  # the SDK's shape takes the plain path
    assert plain[0].getlist("timestamp_granularities[]") == ["word", "segment"]
    assert plain[1]["file"].read() == AUDIO
    plain[1]["file"].seek(0)
    assert as_plain_data(plain) == as_plain_data(django_reads(body, boundary))


@pytest.mark.parametrize(
    "body",
    [
        body_of(field(b"model", b"whisper-1"), file_part()),  # the JS SDK's shape
        body_of(field(b"prompt", "Caf\u00e9 \u00fcber \u65e5\u672c".encode()), file_part()),
        body_of(field(b"language", b""), field(b"language", b"en"), file_part()),
        body_of(field(b" model ", b"m"), file_part(filename=b" my clip (1).wav ")),
        body_of(field(b"model", b"m"), file_part().replace(b"audio/wav", b"Audio/WAV")),
    ],
    ids=["js-sdk", "utf-8-value", "repeated-field", "spaces-in-names", "content-type-case"],
)
def test_plain_forms_are_read_as_django_reads_them(body):
    plain = plain_form(body, BOUNDARY.encode(), "utf-8")

    assert plain is not None
    assert as_plain_data(plain) == as_plain_data(django_reads(body))


@pytest.mark.parametrize(
    "body",
    [
        b"preamble\r\n" + body_of(field(b"model", b"m"), file_part()),
        body_of(field(b"model", b"m"), file_part(), end=b"--\r\nepilogue"),
        body_of(field(b"model", b"m"), file_part(), end=b"--"),
        body_of(field(b'we\\"ird', b"m"), file_part()),
        body_of(field(b"model", b"m"), file_part(filename=b"../../etc/passwd")),
        body_of(field(b"model", b"m"), file_part(filename=b"..")),
        body_of(field(b"model", b"m"), file_part(filename=b"caf&eacute;.wav")),
        body_of(field(b"model", "m\u00e9".encode("latin-1")), file_part()),
        body_of(field(b"model", b"m"), file_part(data=b"")),
        body_of(
            b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\nUklGRg=="
        ),
        body_of(field(b"model", b"m"), file_part(data=b"abc\r\n--" + BOUNDARY.encode() + b"X")),
        body_of(b"Content-Disposition: form-data; name*=UTF-8''model\r\n\r\nm", file_part()),
        body_of(b"Content-Type: text/plain; charset=latin-1\r\n" + file_part()),
        body_of(field(b"model", b"m"), file_part(filename=b"a" * 1100 + b".wav")),
    ],
    ids=[
        "preamble",
        "epilogue",
        "no-final-crlf",
        "escaped-name",
        "path-in-filename",
        "dot-dot-filename",
        "html-entity-filename",
        "latin-1-value",
        "empty-file",
        "base64-part",
        "delimiter-like-data",
        "rfc2231-name",
        "repeated-header",
        "head-past-djangos-limit",
    ],
)
def test_anything_else_is_left_to_djangos_parser(body):
    assert plain_form(body, BOUNDARY.encode(), "utf-8") is None
