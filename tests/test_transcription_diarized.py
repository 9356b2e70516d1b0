"""response_format=diarized_json, chunking_strategy and known speakers: checked as OpenAI
checks them, refused where the model cannot diarize (local Whisper), and passed through to
an OpenAI-compatible upstream (tests/openai_transcription_fake.py, OpenAI's rules) and
back, whole and streamed, through the official SDK."""

import base64
import json
import math
from io import BytesIO

import httpx
import openai
import pytest

from tests.audio_clips import silent_flac
from tests.openai_contract import assert_matches, assert_stream_matches
from tests.openai_errors import assert_error
from tests.openai_transcription_fake import (
    API_KEY,
    DIARIZE,
    WHISPER,
    FakeOpenAITranscriptions,
)
from tests.tones import tone_wav
from tests.upstream_helpers import catalog_from, model_table, record_of, upstream_table
from usage.models import UsageRecord

URL = "/v1/audio/transcriptions"
LOCAL = "openai/whisper-large-v3"  # served by local Whisper, which cannot diarize
KEY_ENV = "AROPENAI_DIARIZE_TEST_KEY"
MINUTE = {"per_audio_minute": 0.006}
NOT_AUDIO = base64.b64encode(b"not audio at all").decode()


def data_url(seconds: float) -> str:
    return "data:audio/wav;base64," + base64.b64encode(tone_wav(seconds)).decode()


def post(api, audio: bytes, **fields):
    upload = BytesIO(audio)
    upload.name = "clip.wav"
    return api.post(URL, data={"model": LOCAL, "file": upload, **fields})


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
    # As OpenAI's diarizing model needs: plain requests ask json (it has no verbose_json).
    text += model_table("up/diarize", "transcription", "openai", DIARIZE, price=MINUTE,
                        options={"transcript_format": "json"})  # fmt: skip
    text += model_table("up/whisper-1", "transcription", "openai", WHISPER, price=MINUTE)
    text += model_table("lenient/stt", "transcription", "lenient", DIARIZE, price=MINUTE)
    with catalog_from(tmp_path / "catalog.toml", text):
        yield fake


# --- refusals: what the model cannot do, and what OpenAI refuses ------------------------------


@pytest.mark.engines
def test_local_whisper_refuses_diarized_json_with_openais_400(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model=LOCAL, file=("clip.wav", tone_wav(1.0)), response_format="diarized_json"
        )
    error = caught.value.body
    assert (caught.value.param, caught.value.code) == ("response_format", "unsupported_value")
    assert error["message"] == (
        "response_format 'diarized_json' is not compatible with model 'local/whisper-base'. "
        "Use 'json', 'text', 'srt', 'verbose_json' or 'vtt' instead."
    )
    record = UsageRecord.objects.get()
    assert (record.status_code, record.cost) == (400, 0)


def test_translations_have_no_diarized_json(api):
    upload = BytesIO(tone_wav(1.0))
    upload.name = "clip.wav"
    response = api.post(
        "/v1/audio/translations",
        data={"model": LOCAL, "file": upload, "response_format": "diarized_json"},
    )
    error = assert_error(response, 400, "response_format", "invalid_value")
    assert "json, text, srt, verbose_json, vtt." in error["message"]


def test_diarizing_over_30_seconds_needs_a_chunking_strategy(api):
    error = assert_error(
        post(api, silent_flac(31), response_format="diarized_json"),
        400,
        "chunking_strategy",
        "missing_required_parameter",
    )
    assert error["message"].startswith("chunking_strategy is required for diarization models")
    assert UsageRecord.objects.count() == 0  # refused before anything ran


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"known_speaker_names[]": ["agent"], "known_speaker_references[]": [data_url(3)]},
         "known_speaker_names[]", "invalid_value"),  # only with diarized_json
        ({"response_format": "diarized_json", "known_speaker_names[]": list("abcde"),
          "known_speaker_references[]": [data_url(3)] * 5},
         "known_speaker_names[]", "array_above_max_length"),
        ({"response_format": "diarized_json", "known_speaker_names[]": ["a", "b"],
          "known_speaker_references[]": [data_url(3)]},
         "known_speaker_references[]", "invalid_value"),
        ({"response_format": "diarized_json", "known_speaker_names[]": ["agent"],
          "known_speaker_references[]": ["https://example.com/agent.wav"]},
         "known_speaker_references[0]", "invalid_value"),
        ({"response_format": "diarized_json", "known_speaker_names[]": ["agent"],
          "known_speaker_references[]": ["data:audio/wav;base64,@@@"]},
         "known_speaker_references[0]", "invalid_value"),
        ({"response_format": "diarized_json", "known_speaker_names[]": ["a", "b"],
          "known_speaker_references[]": [data_url(3), data_url(1)]},
         "known_speaker_references[1]", "invalid_value"),  # shorter than 2 s
        ({"response_format": "diarized_json", "known_speaker_names[]": ["agent"],
          "known_speaker_references[]": ["data:audio/wav;base64," + NOT_AUDIO]},
         "known_speaker_references[0]", "invalid_value"),  # not audio
        ({"chunking_strategy": "sometimes"}, "chunking_strategy", "invalid_value"),
        ({"chunking_strategy": '{"type": "client_vad"}'},
         "chunking_strategy.type", "invalid_value"),
        ({"chunking_strategy": '{"type": "server_vad", "pad": 3}'},
         "chunking_strategy.pad", "unknown_parameter"),
        ({"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "2"},
         "chunking_strategy.threshold", "invalid_value"),
        ({"chunking_strategy[type]": "server_vad", "chunking_strategy[silence_duration_ms]": "x"},
         "chunking_strategy.silence_duration_ms", "invalid_value"),
        ({"chunking_strategy": '{"type": "server_vad", "prefix_padding_ms": 1.5}'},
         "chunking_strategy.prefix_padding_ms", "invalid_value"),
    ],
)  # fmt: skip
def test_bad_newer_fields_are_400s_naming_the_field(api, fields, param, code):
    assert_error(post(api, tone_wav(1.0), **fields), 400, param, code)


def test_messages_say_what_openai_allows(api):
    names = {"response_format": "diarized_json", "known_speaker_names[]": list("abcde"),
             "known_speaker_references[]": [data_url(3)] * 5}  # fmt: skip
    error = assert_error(post(api, tone_wav(1.0), **names), 400, "known_speaker_names[]")
    assert error["message"] == (
        "Invalid 'known_speaker_names[]': array too long. Expected an array with maximum "
        "length 4, but got an array with length 5 instead."
    )
    short = {"response_format": "diarized_json", "known_speaker_names[]": ["a"],
             "known_speaker_references[]": [data_url(12)]}  # fmt: skip
    error = assert_error(post(api, tone_wav(1.0), **short), 400, "known_speaker_references[0]")
    assert "12.0 s long" in error["message"]
    assert "between 2 and 10 seconds" in error["message"]


# --- passed through to an OpenAI-compatible upstream ------------------------------------------


def test_diarized_json_through_the_sdk_with_known_speakers(openai_client, upstream_models):
    references = [data_url(2.5), data_url(3.0)]
    transcription = openai_client.audio.transcriptions.create(
        model="up/diarize",
        file=("call.wav", tone_wav(3.0)),
        response_format="diarized_json",
        chunking_strategy="auto",
        known_speaker_names=["agent", "customer"],
        known_speaker_references=references,
    )
    # What the upstream was sent, field for field, as OpenAI's SDK would have sent it.
    form = upstream_models.last_form()
    assert form["model"] == [DIARIZE]
    assert form["response_format"] == ["diarized_json"]
    assert form["chunking_strategy"] == ["auto"]
    assert form["known_speaker_names[]"] == ["agent", "customer"]
    assert form["known_speaker_references[]"] == references
    assert "include[]" not in form
    assert "timestamp_granularities[]" not in form
    # The SDK reads OpenAI's diarized object.
    assert type(transcription).__name__ == "TranscriptionDiarized"
    assert [(s.id, s.speaker, s.text) for s in transcription.segments] == [
        ("seg_000", "agent", "W0"), ("seg_001", "customer", "W1"), ("seg_002", "agent", "W2")
    ]  # fmt: skip
    assert [(s.start, s.end) for s in transcription.segments] == [(0, 1), (1, 2), (2, 3)]
    assert transcription.text == "W0 W1 W2"
    assert transcription.duration == pytest.approx(3.0)
    assert transcription.usage.type == "duration"
    assert transcription.usage.seconds == 3
    record = record_of("up/diarize")
    assert (record.status_code, record.audio_seconds_in) == (200, 3)
    assert record.cost > 0


def test_diarized_json_body_is_exactly_openais_schema(arouter_server, live_key, upstream_models):
    response = httpx.post(
        f"{arouter_server.url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {live_key.raw}"},
        files={"file": ("call.wav", tone_wav(2.0))},
        data={"model": "up/diarize", "response_format": "diarized_json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches("CreateTranscriptionResponseDiarizedJson", body, extras=["usage.cost"])
    assert list(body) == ["task", "duration", "text", "segments", "usage"]
    assert [s["speaker"] for s in body["segments"]] == ["A", "B"]


def test_a_server_vad_object_goes_upstream_as_openais_json(openai_client, upstream_models):
    # The SDK sends the object as bracketed fields; the upstream receives one JSON string.
    openai_client.audio.transcriptions.create(
        model="up/diarize",
        file=("long.wav", tone_wav(31.0)),
        response_format="diarized_json",
        chunking_strategy={"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 500},
    )
    sent = json.loads(upstream_models.last_form()["chunking_strategy"][0])
    assert sent == {"type": "server_vad", "prefix_padding_ms": 300, "silence_duration_ms": 500,
                    "threshold": 0.6}  # fmt: skip


def test_diarized_stream_relays_segment_events(openai_client, upstream_models):
    events = list(
        openai_client.audio.transcriptions.create(
            model="up/diarize",
            file=("call.wav", tone_wav(2.0)),
            response_format="diarized_json",
            stream=True,
        )
    )
    assert upstream_models.last_form()["stream"] == ["true"]
    raw = [event.model_dump(exclude_unset=True) for event in events]
    assert_stream_matches("CreateTranscriptionResponseStreamEvent", raw, ["usage.cost"])
    assert [e["type"] for e in raw] == [
        "transcript.text.delta", "transcript.text.segment",
        "transcript.text.delta", "transcript.text.segment", "transcript.text.done",
    ]  # fmt: skip
    first, segment = raw[0], raw[1]
    assert first == {"type": "transcript.text.delta", "delta": "W0", "segment_id": "seg_000"}
    assert segment == {"type": "transcript.text.segment", "id": "seg_000", "start": 0.0,
                       "end": 1.0, "text": "W0", "speaker": "A"}  # fmt: skip
    assert raw[2]["delta"] == " W1"  # the text's space between two utterances
    assert raw[3]["speaker"] == "B"
    done = raw[-1]
    assert done["text"] == "W0 W1" == "".join(e["delta"] for e in raw[:-1] if "delta" in e)
    assert done["usage"]["type"] == "tokens"
    record = record_of("up/diarize")
    assert (record.status_code, record.audio_seconds_in) == (200, 2)
    assert record.cost > 0


def test_the_upstreams_own_refusal_is_relayed(openai_client, upstream_models):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model="up/whisper-1", file=("a.wav", tone_wav(1.0)), response_format="diarized_json"
        )
    assert (caught.value.param, caught.value.code) == ("response_format", "unsupported_value")
    assert "'diarized_json' is not compatible with model 'whisper-1'" in caught.value.message


def test_an_upstream_that_ignores_diarization_is_refused_not_passed_on(
    openai_client, upstream_models
):
    # An "OpenAI-compatible" server answering {"text"} to diarized_json cannot diarize.
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model="lenient/stt", file=("a.wav", tone_wav(1.0)), response_format="diarized_json"
        )
    assert (caught.value.param, caught.value.code) == ("response_format", "unsupported_value")
    with pytest.raises(openai.BadRequestError):
        list(
            openai_client.audio.transcriptions.create(
                model="lenient/stt",
                file=("a.wav", tone_wav(1.0)),
                response_format="diarized_json",
                stream=True,
            )
        )


def test_plain_json_from_a_diarizing_model_still_works(openai_client, upstream_models):
    transcription = openai_client.audio.transcriptions.create(
        model="up/diarize", file=("a.wav", tone_wav(2.0))
    )
    assert transcription.text == "W0 W1"
    assert upstream_models.last_form()["response_format"] == ["json"]
    assert math.isclose(record_of("up/diarize").audio_seconds_in, 2)
