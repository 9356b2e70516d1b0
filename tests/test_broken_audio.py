"""A corpus of broken and hostile audio: every file is a 400 naming `file`, in bounded
memory and time, on the transcription endpoint and inside a chat request."""

import base64
import io
import struct
import tracemalloc

import av
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.openai_errors import assert_error

MB = 1024 * 1024


def wav_header(data_size: int, rate: int = 16_000) -> bytes:
    return (
        b"RIFF" + struct.pack("<I", (36 + data_size) & 0xFFFFFFFF) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data_size & 0xFFFFFFFF)
    )  # fmt: skip


def silent_flac(seconds: int, rate: int = 8000) -> bytes:
    """Hours of silence in a few hundred kilobytes: a decompression bomb for decoders."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        second = np.zeros((1, rate), dtype=np.int16)
        for n in range(seconds):
            frame = av.AudioFrame.from_ndarray(second, format="s16", layout="mono")
            frame.rate, frame.pts = rate, n * rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


CORPUS = {
    "empty": b"",
    "random bytes": np.random.default_rng(1).bytes(50_000),
    "truncated wav header": wav_header(32_000)[:20],
    "png named wav": b"\x89PNG\r\n\x1a\n" + b"\x00" * 4096,
    "wav claiming 4 GB, holding 10 ms": wav_header(0xFFFFFFF0) + b"\x00" * 320,
    "mp4 with an endless atom": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    + b"\xff\xff\xff\xffmdat"
    + b"\x00" * 2048,
    "ogg page header only": b"OggS\x00\x02" + b"\x00" * 21,
    "mp3 frame sync then noise": b"\xff\xfb\x90\x64" + np.random.default_rng(2).bytes(8000),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_uploads_are_400_naming_the_file(api, name):
    upload = SimpleUploadedFile("audio.wav", CORPUS[name], "audio/wav")
    response = api.post("/v1/audio/transcriptions", {"model": "local/whisper-base", "file": upload})
    error = assert_error(response, 400, "file")
    assert error["message"]


@pytest.mark.parametrize(
    "name", ["random bytes", "png named wav", "wav claiming 4 GB, holding 10 ms"]
)
def test_broken_audio_inside_a_chat_request_is_400(api, name):
    body = {
        "model": "local/audio-chat",
        "modalities": ["text"],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": base64.b64encode(CORPUS[name]).decode(),
                            "format": "wav",
                        },
                    }
                ],
            }
        ],
    }
    response = api.post("/v1/chat/completions", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_decompression_bomb_stops_at_the_duration_limit_in_bounded_memory(api, settings):
    settings.AROUTER_MAX_AUDIO_SECONDS = 600
    bomb = silent_flac(3 * 3600)  # three hours
    assert len(bomb) < 2 * MB

    tracemalloc.start()
    try:
        response = api.post(
            "/v1/audio/transcriptions",
            {"model": "local/whisper-base", "file": SimpleUploadedFile("bomb.flac", bomb)},
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    error = assert_error(response, 400, "file", "audio_too_long")
    assert "600 seconds" in error["message"]
    # Three hours decoded would be over 340 MB of samples; stopping at ten minutes is ~60.
    assert peak < 150 * MB, peak
