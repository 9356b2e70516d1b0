"""include[]=logprobs: local Whisper's own token log-probabilities in the json answer and
in each streamed delta and the done event; OpenAI's rules (json only, `logprobs` the only
value); passed through to an OpenAI-compatible upstream and back (whole and streamed), and
refused when the upstream does not produce them. Through the official SDK."""

from io import BytesIO

import httpx
import openai
import pytest

from tests.chat_speech import heard_error_rate
from tests.openai_contract import assert_matches, assert_stream_matches
from tests.openai_errors import assert_error
from tests.openai_transcription_fake import (
    API_KEY,
    TRANSCRIBE,
    WHISPER,
    FakeOpenAITranscriptions,
)
from tests.speech_fixtures import *  # noqa: F403
from tests.tones import tone_wav
from tests.upstream_helpers import catalog_from, model_table, record_of, upstream_table

URL = "/v1/audio/transcriptions"
LOCAL = "openai/whisper-large-v3"  # local/whisper-base
KEY_ENV = "AROPENAI_LOGPROBS_TEST_KEY"
MINUTE = {"per_audio_minute": 0.006}
MAX_ERROR = 0.2


@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAITranscriptions().start()
    yield server
    server.stop()


@pytest.fixture
def upstream_models(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    fake.reset()
    text = upstream_table("openai", fake.url("ok"), KEY_ENV, backoff_base=0.01)
    text += upstream_table("lenient", fake.url("lenient"), KEY_ENV, backoff_base=0.01)
    text += model_table("up/gpt-4o-transcribe", "transcription", "openai", TRANSCRIBE,
                        price=MINUTE, options={"transcript_format": "json"})  # fmt: skip
    text += model_table("up/whisper-1", "transcription", "openai", WHISPER, price=MINUTE)
    text += model_table("lenient/stt", "transcription", "lenient", TRANSCRIBE, price=MINUTE)
    with catalog_from(tmp_path / "catalog.toml", text):
        yield fake


# --- local Whisper ------------------------------------------------------------------------


@pytest.mark.engines
def test_local_json_has_each_tokens_logprob(arouter_server, live_key, english_wav):
    response = httpx.post(
        f"{arouter_server.url}{URL}",
        headers={"Authorization": f"Bearer {live_key.raw}"},
        files={"file": ("speech.wav", english_wav.content)},
        data={"model": LOCAL, "include[]": "logprobs"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches("CreateTranscriptionResponseJson", body, extras=["usage.cost"])
    assert list(body) == ["text", "logprobs", "usage"]
    assert heard_error_rate(english_wav.text, body["text"]) <= MAX_ERROR, body["text"]
    assert "".join(p["token"] for p in body["logprobs"]).strip() == body["text"]
    for item in body["logprobs"]:
        assert list(item) == ["token", "logprob", "bytes"]
        assert item["logprob"] <= 0
        assert bytes(item["bytes"]).decode() == item["token"]
    assert body["usage"]["type"] == "duration"


@pytest.mark.engines
def test_local_logprobs_through_the_sdk_whole_and_streamed(openai_client, english_wav):
    clip = ("speech.wav", english_wav.content)
    transcription = openai_client.audio.transcriptions.create(
        model=LOCAL, file=clip, include=["logprobs"]
    )
    tokens = transcription.logprobs
    assert tokens
    assert "".join(t.token for t in tokens).strip() == transcription.text
    events = list(
        openai_client.audio.transcriptions.create(
            model=LOCAL, file=clip, include=["logprobs"], stream=True
        )
    )
    raw = [event.model_dump(exclude_unset=True) for event in events]
    assert_stream_matches("CreateTranscriptionResponseStreamEvent", raw, ["usage.cost"])
    *deltas, done = raw
    assert all(set(d) == {"type", "delta", "logprobs"} for d in deltas)
    assert set(done) == {"type", "text", "logprobs", "usage"}
    # Each delta carries its own tokens; the done event all of them, the same decode.
    for delta in deltas:
        assert "".join(p["token"] for p in delta["logprobs"]).strip() == delta["delta"].strip()
    assert done["logprobs"] == [p for d in deltas for p in d["logprobs"]]
    assert done["text"] == transcription.text
    assert [p["logprob"] for p in done["logprobs"]] == [t.logprob for t in tokens]


@pytest.mark.engines
def test_a_plain_local_stream_carries_no_logprobs(openai_client, english_wav):
    events = list(
        openai_client.audio.transcriptions.create(
            model=LOCAL, file=("speech.wav", english_wav.content), stream=True
        )
    )
    assert all("logprobs" not in e.model_dump(exclude_unset=True) for e in events)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"include[]": "logprobs", "response_format": "verbose_json"}, "invalid_value"),
        ({"include[]": "logprobs", "response_format": "text"}, "invalid_value"),
        ({"include[]": "tokens"}, "invalid_value"),
    ],
)
def test_logprobs_only_with_json_and_only_logprobs(api, fields, code):
    upload = BytesIO(tone_wav(1.0))
    upload.name = "clip.wav"
    error = assert_error(api.post(URL, data={"model": LOCAL, "file": upload, **fields}), 400,
                         "include[]", code)  # fmt: skip
    assert "'json'" in error["message"] or "'logprobs'" in error["message"]


# --- passed through to an upstream -----------------------------------------------------------


def test_upstream_logprobs_are_asked_for_with_json_and_relayed(openai_client, upstream_models):
    transcription = openai_client.audio.transcriptions.create(
        model="up/gpt-4o-transcribe", file=("a.wav", tone_wav(2.0)), include=["logprobs"]
    )
    form = upstream_models.last_form()
    assert (form["response_format"], form["include[]"]) == (["json"], ["logprobs"])
    assert transcription.text == "w0 w1"
    assert [(t.token, t.logprob, t.bytes) for t in transcription.logprobs] == [
        ("w0", -0.01, [119, 48]), ("w1", -0.02, [119, 49])
    ]  # fmt: skip
    record = record_of("up/gpt-4o-transcribe")
    assert (record.status_code, record.audio_seconds_in) == (200, 2)


def test_upstream_stream_relays_each_deltas_logprobs(openai_client, upstream_models):
    events = list(
        openai_client.audio.transcriptions.create(
            model="up/gpt-4o-transcribe",
            file=("a.wav", tone_wav(3.0)),
            include=["logprobs"],
            stream=True,
        )
    )
    assert upstream_models.last_form()["stream"] == ["true"]
    raw = [event.model_dump(exclude_unset=True) for event in events]
    assert_stream_matches("CreateTranscriptionResponseStreamEvent", raw, ["usage.cost"])
    *deltas, done = raw
    assert [d["delta"] for d in deltas] == ["w0", " w1", " w2"]
    assert [d["logprobs"] for d in deltas] == [
        [{"token": "w0", "logprob": -0.01, "bytes": [119, 48]}],
        [{"token": " w1", "logprob": -0.02, "bytes": [32, 119, 49]}],
        [{"token": " w2", "logprob": -0.03, "bytes": [32, 119, 50]}],
    ]
    assert done["text"] == "w0 w1 w2"
    assert done["logprobs"] == [p for d in deltas for p in d["logprobs"]]
    # Billed by the audio's measured length: the done event reports only tokens.
    record = record_of("up/gpt-4o-transcribe")
    assert (record.status_code, record.audio_seconds_in) == (200, 3)
    assert record.cost > 0


def test_a_model_without_logprobs_is_refused(openai_client, upstream_models):
    # OpenAI's whisper-1 refuses include[] itself; its 400 is relayed.
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model="up/whisper-1", file=("a.wav", tone_wav(1.0)), include=["logprobs"]
        )
    assert caught.value.param == "include[]"
    # A server that ignores include[] answers without logprobs: refused, not passed on.
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model="lenient/stt", file=("a.wav", tone_wav(1.0)), include=["logprobs"]
        )
    assert (caught.value.param, caught.value.code) == ("include[]", "unsupported_value")
    assert caught.value.body["message"] == (
        "include[] 'logprobs' is not compatible with model 'lenient/stt'."
    )
