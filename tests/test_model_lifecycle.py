"""Models' lifecycle, end to end: a retired model (or one past its shutdown_date) is served
by its successor, each response saying so in a `Warning: 299 - "..."` header and the ledger
recording the model that served; one without a successor is OpenAI's 404; /v1/models shows
OpenAI's `shutdown_date` and our `deprecated`/`successor`/`retired`. The official SDK talks
to ARouter, ARouter to the loopback fault server standing in for OpenAI (tests/fault_server.py).
"""

import io
import json
import time
import wave
from pathlib import Path

import numpy as np
import openai
import pytest
from django.conf import settings

from tests.fault_server import FaultServer
from tests.openai_contract import assert_matches
from tests.upstream_helpers import catalog_from, model_table, upstream_table
from usage.models import UsageRecord

KEY_ENV = "ARLIFECYCLE_TEST_KEY"
STT_PRICE = {"per_audio_minute": 0.006}
NOTICE = "The model `{old}` was retired{on}; its successor `{new}` served this request."


def warning(old: str, new: str, on: str = "") -> str:
    return '299 - "' + NOTICE.format(old=old, new=new, on=on) + '"'


@pytest.fixture(scope="module")
def upstream():
    server = FaultServer().start()
    yield server
    server.stop()


def lifecycle_catalog(server: FaultServer) -> str:
    # The default catalog (its local engines serve the realtime case) plus upstream models.
    text = Path(settings.AROUTER_CATALOG).read_text() + "\n"
    text += upstream_table("up", server.url("ok"), KEY_ENV)
    text += model_table("new/stt", "transcription", "up", "up-whisper", price=STT_PRICE)
    text += model_table("new/tts", "speech", "up", "up-tts")
    text += model_table("new/chat", "chat", "up", "up-chat")
    # Retired by date, by flag, and down a chain; each names its own upstream target, so
    # what reaches the upstream shows which entry served.
    text += model_table("old/stt", "transcription", "up", "up-old-whisper", price=STT_PRICE,
                        deprecated="2024-01-10", shutdown_date="2024-07-01",
                        successor="new/stt")  # fmt: skip
    text += model_table("old/tts", "speech", "up", "up-old-tts", retired=True, successor="new/tts")
    text += model_table("oldest/chat", "chat", "up", "up-oldest", retired=True,
                        successor="old/chat")  # fmt: skip
    text += model_table("old/chat", "chat", "up", "up-old-chat", shutdown_date="2025-01-31",
                        successor="new/chat")  # fmt: skip
    text += model_table("gone/stt", "transcription", "up", "up-gone", shutdown_date="2024-03-01")
    text += model_table("sunset/chat", "chat", "up", "up-sunset", deprecated="2025-06-01",
                        shutdown_date="2999-12-31", successor="new/chat")  # fmt: skip
    text += upstream_table("refusing", server.url("refuse"), KEY_ENV)
    text += model_table("refusing/stt", "transcription", "refusing", "up-whisper")
    text += model_table("old/refusing-stt", "transcription", "refusing", "up-old", retired=True,
                        successor="refusing/stt")  # fmt: skip
    text += '[models."legacy/realtime"]\nalias_of = "local/audio-chat"\nretired = true\n'
    text += 'successor = "local/audio-chat"\n'
    return text


@pytest.fixture
def lifecycle(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, upstream.api_key)
    upstream.reset()
    with catalog_from(tmp_path / "catalog.toml", lifecycle_catalog(upstream)):
        yield upstream


def wav(seconds: float = 2.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def record_of(key, count: int = 1) -> list[UsageRecord]:
    """The key's finished usage rows; a stream's row is completed just after its last byte."""
    deadline = time.monotonic() + 10
    while True:
        rows = list(UsageRecord.objects.finished().filter(api_key=key.api_key))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def sent_models(server: FaultServer) -> list[str]:
    return [
        (seen.json or {}).get("model") or seen.form.get("model", [""])[0]
        for seen in server.seen("ok")
    ]


# --- requests naming a retired model --------------------------------------------------------


def test_a_transcription_past_its_shutdown_date_is_served_by_the_successor(
    openai_client, lifecycle, live_key
):
    raw = openai_client.audio.transcriptions.with_raw_response.create(
        model="old/stt", file=("clip.wav", wav(), "audio/wav")
    )
    assert raw.headers["warning"] == warning("old/stt", "new/stt", " on 2024-07-01")
    assert raw.parse().text == "w0 w1"
    assert sent_models(lifecycle) == ["up-whisper"]  # the successor's target, not up-old-whisper
    [row] = record_of(live_key)
    assert (row.model, row.status_code, row.audio_seconds_in) == ("new/stt", 200, 2)
    assert float(row.cost) == pytest.approx(2 / 60 * 0.006)


def test_translations_fall_back_too(openai_client, lifecycle, live_key):
    raw = openai_client.audio.translations.with_raw_response.create(
        model="old/stt", file=("clip.wav", wav(), "audio/wav")
    )
    assert raw.headers["warning"] == warning("old/stt", "new/stt", " on 2024-07-01")
    assert [row.model for row in record_of(live_key)] == ["new/stt"]


def test_streamed_speech_of_a_retired_model_carries_the_warning(openai_client, lifecycle, live_key):
    with openai_client.audio.speech.with_streaming_response.create(
        model="old/tts", voice="alloy", input="Hello there.", response_format="pcm"
    ) as response:
        assert response.headers["warning"] == warning("old/tts", "new/tts")
        assert len(response.read()) == 48_000
    assert sent_models(lifecycle) == ["up-tts"]
    assert [row.model for row in record_of(live_key)] == ["new/tts"]


def test_chat_follows_the_chain_of_successors(openai_client, lifecycle, live_key):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="oldest/chat", messages=[{"role": "user", "content": "Hi"}]
    )
    # The notice names what the client asked for and what answered it.
    assert raw.headers["warning"] == warning("oldest/chat", "new/chat")
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from the fault server."
    assert completion.model == "new/chat"  # the model that answered
    assert sent_models(lifecycle) == ["up-chat"]
    assert [row.model for row in record_of(live_key)] == ["new/chat"]


def test_a_streamed_chat_carries_the_warning_before_its_first_chunk(
    openai_client, lifecycle, live_key
):
    with openai_client.chat.completions.with_streaming_response.create(
        model="old/chat", messages=[{"role": "user", "content": "Hi"}], stream=True
    ) as response:
        assert response.headers["warning"] == warning("old/chat", "new/chat", " on 2025-01-31")
        chunks = list(response.parse())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Hello from the fault server."
    assert {chunk.model for chunk in chunks} == {"new/chat"}
    assert [row.model for row in record_of(live_key)] == ["new/chat"]


def test_an_error_after_the_fallback_carries_the_warning_too(openai_client, lifecycle):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model="old/refusing-stt", file=("clip.wav", wav(), "audio/wav")
        )
    assert caught.value.body["param"] == "temperature"  # the upstream's own 400
    assert caught.value.response.headers["warning"] == warning("old/refusing-stt", "refusing/stt")


def test_a_model_before_its_shutdown_date_is_served_as_itself(openai_client, lifecycle, live_key):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="sunset/chat", messages=[{"role": "user", "content": "Hi"}]
    )
    assert "warning" not in raw.headers
    assert sent_models(lifecycle) == ["up-sunset"]
    assert [row.model for row in record_of(live_key)] == ["sunset/chat"]


def test_a_retired_model_without_successor_is_openais_404(openai_client, lifecycle, live_key):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.audio.transcriptions.create(
            model="gone/stt", file=("clip.wav", wav(), "audio/wav")
        )
    error = caught.value.body
    assert_matches("Error", error)
    assert (error["code"], error["param"], error["type"]) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    assert error["message"].startswith("The model `gone/stt` was retired on 2024-03-01")
    assert lifecycle.requests == []  # nothing reached the upstream


# --- /v1/models -----------------------------------------------------------------------------


def test_the_list_shows_lifecycle_fields_and_leaves_out_what_cannot_be_served(
    openai_client, lifecycle
):
    listing = openai_client.models.with_raw_response.list()
    body = json.loads(listing.text)
    extras = ["kind", "description", "input_modalities", "output_modalities", "served_by",
              "alias_of", "pricing", "deprecated", "successor", "retired"]  # fmt: skip
    assert_matches("ListModelsResponse", body, extras=[f"data.*.{field}" for field in extras])
    models = {model.id: model for model in listing.parse()}
    assert "gone/stt" not in models  # a request naming it would be a 404
    old = models["old/stt"]
    assert old.shutdown_date == "2024-07-01"  # OpenAI's field, as the SDK types it
    assert (old.deprecated, old.successor, old.retired) == ("2024-01-10", "new/stt", True)
    assert (models["old/tts"].shutdown_date, models["old/tts"].retired) == (None, True)
    sunset = models["sunset/chat"]
    assert (sunset.shutdown_date, sunset.retired) == ("2999-12-31", False)
    assert models["new/chat"].shutdown_date is None


def test_retrieving_a_model_shows_its_lifecycle(openai_client, lifecycle):
    model = openai_client.models.retrieve("sunset/chat")
    assert (model.shutdown_date, model.deprecated, model.successor) == (
        "2999-12-31",
        "2025-06-01",
        "new/chat",
    )
    with pytest.raises(openai.NotFoundError, match="was retired on 2024-03-01"):
        openai_client.models.retrieve("gone/stt")


# --- realtime ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_realtime_session_of_a_retired_model_names_its_successor(lifecycle, api_key):
    """No headers on a socket, and an error event would read as a failure: session.created
    names the model that serves (as OpenAI names the snapshot an alias resolved to)."""
    from tests.test_realtime import communicator, receive

    comm = communicator("/v1/realtime?model=legacy/realtime", key=api_key.raw)
    connected, _ = await comm.connect(timeout=60)
    assert connected
    created = await receive(comm)
    assert created["type"] == "session.created"
    assert created["session"]["model"] == "local/audio-chat"
    await comm.disconnect()
