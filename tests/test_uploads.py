"""Uploads past a small size go to a temporary file, and nothing is kept after the request."""

from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from gateway.audio.encode import wav_file

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
    assert upload.read() == audio  # bytes only for whoever needs them (an upstream)
    assert abs(decode_audio(upload.source).duration - 62.0) < 0.01
