"""POST /v1/audio/translations: Spanish speech (espeak-ng) into English text, in every
response format; refusals; the spec's snippet through the SDK and its curl line as HTTP."""

import io
import re

import httpx
import pytest

from tests.speech_fixtures import *  # noqa: F403
from tests.speech_fixtures import Clip
from usage.models import UsageRecord

URL = "/v1/audio/translations"
MODEL = "openai/whisper-large-v3"
# Words the English translation of SPANISH_TEXT must contain, and Spanish words it must not.
ENGLISH_WORDS = {"today", "walk", "park"}
SPANISH_WORDS = {"hoy", "parque", "caminar", "buenos"}

pytestmark = pytest.mark.engines


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def assert_english(text: str) -> None:
    found = words_of(text)
    assert found >= ENGLISH_WORDS, text
    assert not SPANISH_WORDS & found, text


def upload(clip: Clip) -> io.BytesIO:
    handle = io.BytesIO(clip.content)
    handle.name = clip.name
    return handle


def post(api, clip: Clip, **fields):
    return api.post(URL, data={"model": MODEL, "file": upload(clip), **fields})


def test_json_is_english_text_only_and_billed(api, spanish_clip):
    response = post(api, spanish_clip)
    assert response.status_code == 200, response.content
    body = response.json()
    assert list(body) == ["text"]
    assert_english(body["text"])
    record = UsageRecord.objects.get()
    assert (record.endpoint, record.status_code) == ("/v1/audio/translations", 200)
    assert record.audio_seconds_in > 0
    assert record.cost > 0


def test_verbose_json_reports_the_translate_task(api, spanish_clip):
    body = post(api, spanish_clip, response_format="verbose_json").json()
    assert list(body) == ["task", "language", "duration", "text", "segments"]
    assert (body["task"], body["language"]) == ("translate", "english")
    assert body["duration"] == pytest.approx(spanish_clip.seconds, abs=0.05)
    assert_english(body["text"])
    assert body["segments"][0]["id"] == 0


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_text_formats(api, spanish_clip, response_format):
    response = post(api, spanish_clip, response_format=response_format)
    assert response.status_code == 200
    body = response.content.decode()
    assert_english(body)
    if response_format == "srt":
        assert body.startswith("1\n00:00:00,")
    if response_format == "vtt":
        assert body.startswith("WEBVTT\n\n00:00:00.")


def test_the_same_audio_transcribed_is_detected_as_spanish(api, spanish_clip):
    body = api.post(
        "/v1/audio/transcriptions",
        data={"model": MODEL, "file": upload(spanish_clip), "response_format": "verbose_json"},
    ).json()
    assert body["language"] == "spanish"
    assert {"parque", "hoy"} <= words_of(body["text"]), body["text"]


def test_english_only_model_refuses_translation(api, spanish_clip):
    response = post(api, spanish_clip, model="local/whisper-tiny.en")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")
    assert "English-only" in error["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"response_format": "wav"}, "response_format"), ({"temperature": "2"}, "temperature")],
)
def test_bad_parameters_name_the_param(api, spanish_clip, fields, param):
    response = post(api, spanish_clip, **fields)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_empty_file_is_400(api):
    response = post(api, Clip("foreign_audio.mp3", b"", "", 0))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_spec_python_snippet(openai_client, spanish_clip, tmp_path):
    path = tmp_path / "foreign_audio.mp3"
    path.write_bytes(spanish_clip.content)
    with open(path, "rb") as audio_file:
        translation = openai_client.audio.translations.create(
            model="openai/whisper-large-v3",
            file=audio_file,
            response_format="text",
        )
    # The SDK returns a str for response_format="text" (`.text` would raise, as with
    # OpenAI itself); print the string.
    print(translation)
    assert isinstance(translation, str)
    assert_english(translation)


def test_spec_curl_line_as_http(arouter_server, live_key, spanish_clip):
    """curl -F file="@foreign_audio.mp3" -F model="openai/whisper-large-v3" """
    with httpx.Client(timeout=120) as client:
        response = client.post(
            f"{arouter_server.url}/v1/audio/translations",
            headers={"Authorization": f"Bearer {live_key.raw}"},
            files={"file": ("foreign_audio.mp3", spanish_clip.content, "audio/mpeg")},
            data={"model": MODEL},
        )
    assert response.status_code == 200
    assert_english(response.json()["text"])
