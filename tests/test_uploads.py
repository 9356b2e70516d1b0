"""Uploads past a small size go to a temporary file, and nothing is kept after the request."""

import base64
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from gateway.audio.encode import wav_file
from tests.test_limits import clean_counters, fresh_minute, speech  # noqa: F401

SPILLED: list[Path] = []


class RecordingTemporaryFileHandler(TemporaryFileUploadHandler):
    """Django's own spill-to-disk handler, remembering which files it made."""

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        SPILLED.append(Path(self.file.temporary_file_path()))


@pytest.fixture
def spill(settings, tmp_path):
    SPILLED.clear()
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.FILE_UPLOAD_HANDLERS = [
        "django.core.files.uploadhandler.MemoryFileUploadHandler",
        f"{__name__}.RecordingTemporaryFileHandler",
    ]
    return tmp_path


def two_megabytes_of_audio() -> bytes:
    quiet = (np.random.default_rng(3).standard_normal(16_000 * 62) * 30).astype(np.int16)
    return wav_file(quiet, 16_000)


@pytest.mark.parametrize(
    ("model", "status"), [("local/whisper-tiny.en", 200), ("no/such-model", 404)]
)
def test_a_large_upload_spills_to_disk_and_is_gone_after_the_request(api, spill, model, status):
    audio = two_megabytes_of_audio()
    assert len(audio) > 1024 * 1024  # past FILE_UPLOAD_MAX_MEMORY_SIZE

    response = api.post(
        "/v1/audio/transcriptions",
        {"model": model, "file": SimpleUploadedFile("quiet.wav", audio, "audio/wav")},
    )

    assert response.status_code == status  # transcribed, or refused for its model
    assert len(SPILLED) == 1  # it went to disk, not memory...
    assert not SPILLED[0].exists()  # ...and is deleted once answered
    assert list(spill.iterdir()) == []


def test_a_spilled_upload_is_decoded_from_its_file_not_read_into_memory(rf, spill):
    from gateway.audio.decode import decode_audio
    from gateway.routers.transcriptions import parse_form

    audio = two_megabytes_of_audio()
    request = rf.post(
        "/v1/audio/transcriptions",
        {"model": "local/whisper-tiny.en", "file": SimpleUploadedFile("q.wav", audio)},
    )

    upload = parse_form(request, "transcribe").upload

    assert upload.content == b""  # no copy in memory...
    assert upload.path == str(SPILLED[0])  # ...the temporary file is the upload
    assert upload.size == len(audio)
    with upload.opened() as file:  # streamed to whoever needs the bytes (an upstream)
        assert file.read() == audio
    assert abs(decode_audio(upload.source).duration - 62.0) < 0.01


@pytest.fixture
def archive_dir(settings, tmp_path):
    settings.AROUTER_KEEP_UPLOADS_DIR = tmp_path / "kept"
    return settings.AROUTER_KEEP_UPLOADS_DIR


def test_nothing_is_kept_unless_a_folder_is_named():
    from django.conf import settings

    assert settings.AROUTER_KEEP_UPLOADS_DIR is None  # the default: see the test above


@pytest.mark.parametrize("size", ["small", "spilled"])
def test_a_named_folder_keeps_each_upload_under_its_request_id(
    api, api_key, spill, archive_dir, size
):
    audio = two_megabytes_of_audio() if size == "spilled" else wav_file(np.zeros(8000), 16_000)

    response = api.post(
        "/v1/audio/transcriptions",
        {
            "model": "local/whisper-tiny.en",
            "file": SimpleUploadedFile("../my talk.wav", audio, "audio/wav"),
        },
    )

    assert response.status_code == 200
    kept = archive_dir / str(api_key.api_key.team_id) / f"{response['x-request-id']}-1-my_talk.wav"
    assert kept.read_bytes() == audio
    assert len(SPILLED) == (1 if size == "spilled" else 0)
    assert list(spill.iterdir()) == [archive_dir]  # the temporary file itself is gone


def chat_with_audio(api, clip: bytes, model: str = "local/audio-chat"):
    audio = {"data": base64.b64encode(clip).decode(), "format": "wav"}
    messages = [{"role": "user", "content": [{"type": "input_audio", "input_audio": audio}]}]
    return api.post(
        "/v1/chat/completions",
        {"model": model, "messages": messages, "max_completion_tokens": 1},
        content_type="application/json",
    )


def test_chat_input_audio_is_kept_too(api, api_key, archive_dir):
    clip = wav_file(np.zeros(8000), 16_000)

    response = chat_with_audio(api, clip)

    assert response.status_code == 200, response.content
    folder = archive_dir / str(api_key.api_key.team_id)
    assert (folder / f"{response['x-request-id']}-1-input_audio.wav").read_bytes() == clip


# Each way limits refuse a request before it runs: (key settings, status, code).
REFUSALS = {
    "rate limit": ({"requests_per_minute": 1}, 429, "rate_limit_exceeded"),
    "budget": ({"monthly_budget_usd": Decimal("0.00")}, 429, "insufficient_quota"),
    "endpoint not allowed": (
        {"allowed_endpoints": ["/v1/audio/speech"]},
        403,
        "endpoint_not_allowed",
    ),
    "model not allowed": ({"allowed_models": ["local/piper"]}, 404, "model_not_found"),
    "unknown model": ({}, 404, "model_not_found"),
}


@pytest.mark.parametrize("endpoint", ["transcriptions", "translations", "chat"])
@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_request_keeps_nothing(api, api_key, archive_dir, endpoint, refusal):
    fields, status, code = REFUSALS[refusal]
    for name, value in fields.items():
        setattr(api_key.api_key, name, value)
    api_key.api_key.save()
    if refusal == "rate limit":
        fresh_minute()
        speech(api, voice="no-such-voice")  # the minute's one request, uploading nothing
    model = "no/such-model" if refusal == "unknown model" else None
    clip = wav_file(np.zeros(8000), 16_000)

    if endpoint == "chat":
        response = chat_with_audio(api, clip, model or "local/audio-chat")
    else:
        response = api.post(
            f"/v1/audio/{endpoint}",
            {
                "model": model or "local/whisper-base",
                "file": SimpleUploadedFile("talk.wav", clip, "audio/wav"),
            },
        )

    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert not archive_dir.exists() or list(archive_dir.rglob("*")) == []
