"""Forms sent to vendors: parsed back by Django's multipart parser, they hold what was put in,
and they go out in a few large pieces whose length was declared up front."""

import asyncio
import io

from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http.multipartparser import MultiPartParser
from django.test import override_settings

from gateway.providers.base import AudioUpload
from gateway.providers.form_upload import FILE_READ_BYTES, FormUpload

FIELDS = {
    "model": "whisper-1",
    "prompt": 'She said "hi"\\ and left\nearly',
    "timestamp_granularities[]": ["segment", "word"],
}


def sent_pieces(content) -> list[bytes]:
    if isinstance(content, bytes):
        return [content]

    async def pieces() -> list[bytes]:
        return [piece async for piece in content]

    return asyncio.run(pieces())


def parsed(kwargs: dict, body: bytes):
    meta = {
        "CONTENT_TYPE": kwargs["headers"]["content-type"],
        "CONTENT_LENGTH": kwargs["headers"]["content-length"],
    }
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=64 * 1024 * 1024):
        return MultiPartParser(meta, io.BytesIO(body), [MemoryFileUploadHandler()]).parse()


def test_an_upload_in_memory_is_one_body_of_its_declared_length():
    audio = b"RIFF" + bytes(range(256)) * 40
    form = FormUpload(FIELDS, AudioUpload(audio, 'clip "1".wav', "audio/wav"))

    kwargs = form.request_kwargs()
    pieces = sent_pieces(kwargs["content"])

    assert len(pieces) == 1
    assert int(kwargs["headers"]["content-length"]) == len(pieces[0])
    post, files = parsed(kwargs, pieces[0])
    assert post.getlist("timestamp_granularities[]") == ["segment", "word"]
    assert post["model"] == "whisper-1"
    assert files["file"].read() == audio
    assert files["file"].content_type == "audio/wav"


def test_names_and_values_are_escaped_as_html5_forms_escape_them():
    form = FormUpload({'a"b': "1"}, AudioUpload(b"x", 'we\\ird "name"\r\n.wav', ""))

    body = sent_pieces(form.request_kwargs()["content"])[0]

    assert b'name="a%22b"' in body
    assert b'filename="we\\\\ird %22name%22%0D%0A.wav"' in body
    assert b"Content-Type: application/octet-stream\r\n" in body  # none given


def test_a_spilled_upload_is_read_from_its_file_in_large_pieces_each_time_it_is_sent(tmp_path):
    audio = bytes(range(251)) * (FILE_READ_BYTES * 3 // 251)
    path = tmp_path / "spilled.wav"
    path.write_bytes(audio)
    form = FormUpload(FIELDS, AudioUpload(b"", "long.wav", "audio/wav", path=str(path)))

    kwargs = form.request_kwargs()
    first, retried = sent_pieces(kwargs["content"]), sent_pieces(kwargs["content"])

    assert first == retried  # a retry sends the whole form again
    assert len(first) == 2 + 3  # the fields and the file's head, 3 reads, the closing boundary
    body = b"".join(first)
    assert int(kwargs["headers"]["content-length"]) == len(body)
    post, files = parsed(kwargs, body)
    assert post["prompt"] == FIELDS["prompt"]
    assert files["file"].read() == audio
