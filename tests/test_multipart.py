"""The upstream multipart body, read back by Django's own multipart parser."""

import io

from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.http.multipartparser import MultiPartParser

from gateway.providers import multipart
from gateway.providers.base import AudioUpload


def parse(body: bytes, content_type: str):
    meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body))}
    return MultiPartParser(meta, io.BytesIO(body), [MemoryFileUploadHandler()]).parse()


def test_fields_repeated_fields_and_the_file_arrive_intact():
    audio = bytes(range(256)) * 1000 + b"\r\n--not-a-boundary\r\n"
    body, content_type = multipart.encode(
        {"model": "whisper-1", "timestamp_granularities[]": ["segment", "word"], "prompt": "é"},
        AudioUpload(audio, "clip.wav", "audio/wav"),
    )

    fields, files = parse(body, content_type)

    assert fields["model"] == "whisper-1"
    assert fields.getlist("timestamp_granularities[]") == ["segment", "word"]
    assert fields["prompt"] == "é"
    assert files["file"].name == "clip.wav"
    assert files["file"].content_type == "audio/wav"
    assert files["file"].read() == audio


def test_a_filename_with_quotes_cannot_break_out_of_its_header():
    body, content_type = multipart.encode({}, AudioUpload(b"abc", 'evil"; name="model.wav', ""))

    fields, files = parse(body, content_type)

    assert "model" not in fields
    assert files["file"].read() == b"abc"
    assert files["file"].content_type == "application/octet-stream"
