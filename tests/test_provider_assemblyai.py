"""AssemblyAI behind ARouter: the official OpenAI SDK -> ARouter -> a loopback AssemblyAI
(tests/vendor_fakes/assemblyai.py, written from AssemblyAI's API reference:
https://www.assemblyai.com/docs/api-reference/files/upload,
https://www.assemblyai.com/docs/api-reference/transcripts/submit,
https://www.assemblyai.com/docs/api-reference/transcripts/get,
https://www.assemblyai.com/docs/api-reference/transcripts/delete,
https://www.assemblyai.com/docs/pre-recorded-audio/select-the-speech-model).

Every response format, the stream, each error mapping, a retry, usage in the ledger; and
at the provider, what is sent (upload bytes, the transcript request, the team's key on
every call), diarization with and without known speaker names, and deletion.
"""

import asyncio
import json
import math
import time
from decimal import Decimal

import openai
import pytest

from core.errors import OpenAIError
from gateway.catalog import catalog
from gateway.providers import assemblyai, provider_for
from gateway.providers.attempts import start_attempt_log
from gateway.providers.base import AudioUpload, KnownSpeaker, TranscriptionJob
from tests.openai_contract import assert_matches, assert_stream_matches
from tests.tones import tone_wav
from tests.upstream_helpers import catalog_from, model_table, upstream_table
from tests.vendor_fakes.assemblyai import API_KEY, SCRIPT, FakeAssemblyAI
from usage.models import UsageRecord

KEY_ENV = "ARUPSTREAM_ASSEMBLYAI_KEY"
WRONG_KEY_ENV = "ARUPSTREAM_ASSEMBLYAI_WRONG_KEY"
TEAM_KEY = "aai-team-own-key-5678"
SCENARIOS = ("ok", "limited-once", "fail-once", "fail", "job-error", "stuck", "no-duration")
PRICE = Decimal("0.0035")  # per audio minute: Universal-3 Pro's $0.21 an hour
SECONDS = 3.0
FULL_TEXT = " ".join(text for _, text in SCRIPT)
# SCRIPT's sentences, each a segment: who says it, and what.
SENTENCES = [
    ("A", "Hello, thanks for calling Acme support."),
    ("B", "Hi!"),
    ("B", "I have a question about my order."),
    ("A", "Of course, go ahead."),
]


def assemblyai_model(model_id: str, upstream: str, **fields) -> str:
    table = model_table(model_id, "transcription", upstream, "universal-3-pro", **fields)
    return table.replace('provider = "upstream"', 'provider = "assemblyai"')


def fake_catalog(fake: FakeAssemblyAI) -> str:
    tries = {"backoff_base": 0.01, "backoff_max": 1.5, "cooldown_after": 100}
    options = {"poll_interval": 0.01, "max_poll_interval": 0.05,
               "fallback_speech_models": ["universal-2"]}  # fmt: skip
    price = {"per_audio_minute": float(PRICE)}
    text = ""
    for scenario in SCENARIOS:
        timeout = 1.5 if scenario == "stuck" else 30
        text += upstream_table(f"aai-{scenario}", fake.url(scenario), KEY_ENV,
                               request_timeout=timeout, **tries)  # fmt: skip
        text += assemblyai_model(f"aai-{scenario}/u3", f"aai-{scenario}", price=price,
                                 options=options)  # fmt: skip
    text += upstream_table("aai-wrong-key", fake.url("ok"), WRONG_KEY_ENV, **tries)
    text += assemblyai_model("aai-wrong-key/u3", "aai-wrong-key", price=price, options=options)
    text += assemblyai_model("aai-ok/kept", "aai-ok", price=price,
                             options={**options, "delete_transcripts": False})  # fmt: skip
    text += assemblyai_model("aai-ok/prompted", "aai-ok", price=price,
                             options={**options, "prompt_as": "prompt"})  # fmt: skip
    return text


@pytest.fixture(scope="module")
def fake():
    server = FakeAssemblyAI(keys=(API_KEY, TEAM_KEY)).start()
    yield server
    server.stop()


@pytest.fixture
def aai(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setenv(WRONG_KEY_ENV, "aai-not-the-key-0000")
    fake.reset()
    with catalog_from(tmp_path / "catalog.toml", fake_catalog(fake)):
        yield fake


def until(condition, seconds: float = 10.0):
    """`condition()` once it is true (deletions and stream rows land just after answers)."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)
    return value


def record_of(model: str) -> UsageRecord:
    return until(lambda: UsageRecord.objects.finished().filter(model=model).first())


def transcribe(client, model: str = "aai-ok/u3", audio: bytes | None = None, **fields):
    audio = tone_wav(SECONDS) if audio is None else audio
    return client.audio.transcriptions.create(
        model=model, file=("clip.wav", audio, "audio/wav"), **fields
    )


def raw_json(client, **fields) -> dict:
    response = client.audio.transcriptions.with_raw_response.create(
        file=("clip.wav", tone_wav(SECONDS), "audio/wav"), **{"model": "aai-ok/u3", **fields}
    )
    return json.loads(response.text)


def billed(seconds: int) -> Decimal:
    return (Decimal(seconds) / 60 * PRICE).quantize(Decimal("0.00000001"))


# --- through the SDK: each response format ---------------------------------------------------


def test_json_is_assemblyais_text_billed_by_its_audio_duration(openai_client, aai):
    body = raw_json(openai_client)
    assert_matches("CreateTranscriptionResponseJson", body, extras=["usage.cost"])
    assert body == {
        "text": FULL_TEXT,
        "usage": {"type": "duration", "seconds": 3, "cost": float(billed(3))},
    }
    record = record_of("aai-ok/u3")
    assert (record.status_code, record.provider, record.attempts) == (200, "upstream:aai-ok", 1)
    assert record.audio_seconds_in == 3
    assert record.cost == billed(3) > 0


def test_the_four_calls_assemblyai_is_sent(openai_client, aai):
    audio = tone_wav(SECONDS)
    transcribe(openai_client, audio=audio)
    upload, submit = aai.seen("ok", "POST")
    assert upload.path == "/ok/v2/upload"
    assert upload.headers["authorization"] == API_KEY  # the bare key, no "Bearer"
    assert upload.headers["content-type"] == "application/octet-stream"
    assert upload.body == audio
    sent = submit.json()
    assert [sent.pop("audio_url")] == aai.upload_urls  # what the upload answered
    assert sent == {
        "speech_models": ["universal-3-pro", "universal-2"],
        "punctuate": True,
        "format_text": True,
        "language_detection": True,
    }
    (job,) = aai.jobs.values()
    polls = aai.seen("ok", "GET")
    assert [p.path for p in polls] == [f"/ok/v2/transcript/{job.id}"] * 3  # queued, processing
    until(lambda: aai.deleted() == [job.id])
    (delete,) = aai.seen("ok", "DELETE")
    assert delete.headers["authorization"] == API_KEY


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_text_srt_and_vtt_have_a_cue_per_sentence(openai_client, aai, response_format):
    body = transcribe(openai_client, response_format=response_format)
    if response_format == "text":
        assert body == FULL_TEXT + "\n"
        return
    cues = [block for block in body.strip().split("\n\n") if "-->" in block]
    assert [cue.splitlines()[-1] for cue in cues] == [text for _, text in SENTENCES]
    if response_format == "srt":
        assert cues[0].startswith("1\n00:00:00,000 --> 00:00:00,")
    else:
        assert body.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.")


def test_verbose_json_has_sentences_words_and_the_language_name(openai_client, aai):
    body = raw_json(
        openai_client, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert_matches("CreateTranscriptionResponseVerboseJson", body, extras=["task", "usage.cost"])
    assert (body["task"], body["language"], body["duration"]) == ("transcribe", "english", 3.0)
    assert [s["text"] for s in body["segments"]] == [f" {text}" for _, text in SENTENCES]
    assert [s["id"] for s in body["segments"]] == [0, 1, 2, 3]
    assert all(s["avg_logprob"] < 0 for s in body["segments"])  # log of word confidences
    words = body["words"]
    assert " ".join(w["word"] for w in words) == FULL_TEXT
    assert words[0]["start"] == 0.0
    assert all(0 <= w["start"] < w["end"] <= SECONDS for w in words)  # milliseconds → seconds
    assert body["segments"][-1]["end"] == words[-1]["end"]


def test_verbose_json_without_word_granularity_has_no_words(openai_client, aai):
    body = raw_json(openai_client, response_format="verbose_json")
    assert "words" not in body
    assert len(body["segments"]) == len(SENTENCES)


def test_a_language_is_sent_as_its_code_and_answered_by_name(openai_client, aai):
    body = raw_json(openai_client, response_format="verbose_json", language="de")
    assert body["language"] == "german"
    (submit,) = [r for r in aai.seen("ok", "POST") if r.path.endswith("/transcript")]
    assert submit.json()["language_code"] == "de"
    assert "language_detection" not in submit.json()


def test_stream_sends_the_finished_transcript_as_events(openai_client, aai):
    stream = transcribe(openai_client, stream=True)
    events = [event.model_dump(exclude_none=True) for event in stream]
    assert_stream_matches("CreateTranscriptionResponseStreamEvent", events, ["usage.cost"])
    *deltas, done = events
    assert [e["delta"] for e in deltas] == [
        SENTENCES[0][1],
        *(f" {text}" for _, text in SENTENCES[1:]),
    ]
    assert (done["type"], done["text"]) == ("transcript.text.done", FULL_TEXT)
    assert done["usage"]["cost"] == float(billed(3))
    record = record_of("aai-ok/u3")
    assert (record.status_code, record.audio_seconds_in) == (200, 3)
    assert record.cost > 0


def test_diarized_json_labels_each_sentence_with_its_speaker(openai_client, aai):
    from gateway.transcripts import RESPONSE_FORMATS

    if "diarized_json" not in RESPONSE_FORMATS:
        pytest.skip("diarized_json is not served yet")
    body = raw_json(openai_client, response_format="diarized_json", chunking_strategy="auto")
    assert [(s["speaker"], s["text"]) for s in body["segments"]] == SENTENCES
    (submit,) = [r for r in aai.seen("ok", "POST") if r.path.endswith("/transcript")]
    assert submit.json()["speaker_labels"] is True


# --- through the SDK: refusals and failures ---------------------------------------------------


def test_translation_is_refused_without_calling_assemblyai(openai_client, aai):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.translations.create(
            model="aai-ok/u3", file=("clip.wav", tone_wav(SECONDS), "audio/wav")
        )
    error = caught.value.body
    assert (error["param"], error["code"]) == ("model", "model_not_supported")
    assert "cannot translate" in error["message"]
    assert aai.seen("ok") == []


def test_a_wrong_key_is_the_gateways_502_not_the_clients_401(openai_client, aai):
    with pytest.raises(openai.InternalServerError) as caught:
        transcribe(openai_client, model="aai-wrong-key/u3")
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_auth_failed"
    assert "aai-not-the-key" not in str(caught.value.body)
    assert [r.path for r in aai.seen("ok")] == ["/ok/v2/upload"]  # no retry of a 401


def test_a_429_is_retried_after_retry_after_and_the_ledger_counts_both_tries(openai_client, aai):
    assert transcribe(openai_client, model="aai-limited-once/u3").text == FULL_TEXT
    uploads = [r for r in aai.seen("limited-once") if r.path.endswith("/upload")]
    assert len(uploads) == 2
    record = record_of("aai-limited-once/u3")
    assert (record.status_code, record.attempts) == (200, 2)  # "429", then "ok"
    assert record.cost == billed(3)


def test_persistent_5xx_is_a_502_after_the_retries(openai_client, aai):
    with pytest.raises(openai.InternalServerError) as caught:
        transcribe(openai_client, model="aai-fail/u3")
    assert (caught.value.status_code, caught.value.body["code"]) == (502, "upstream_error")
    assert len(aai.seen("fail")) == 3  # max_retries = 2
    assert record_of("aai-fail/u3").cost == 0


def test_assemblyais_400_keeps_its_message(openai_client, aai):
    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(openai_client, language="tlh")
    assert (
        "language_code must be one of the supported languages, got 'tlh'"
        in (caught.value.body["message"])
    )
    assert record_of("aai-ok/u3").cost == 0


def test_audio_assemblyai_cannot_read_is_a_400_with_its_message(openai_client, aai):
    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(openai_client, audio=b"these bytes are not audio at all" * 10)
    error = caught.value.body
    assert error["message"].startswith("File does not appear to contain audio.")
    assert error["param"] == "file"
    (job,) = aai.jobs.values()
    until(lambda: aai.deleted() == [job.id])  # a failed transcript is deleted too


def test_a_transcript_failed_on_assemblyais_side_is_a_502(openai_client, aai):
    with pytest.raises(openai.InternalServerError) as caught:
        transcribe(openai_client, model="aai-job-error/u3")
    assert (caught.value.status_code, caught.value.body["code"]) == (502, "upstream_error")
    assert "developers" not in caught.value.body["message"]


def test_a_transcript_that_never_finishes_is_a_504_and_is_deleted(openai_client, aai):
    with pytest.raises(openai.InternalServerError) as caught:
        transcribe(openai_client, model="aai-stuck/u3")
    assert (caught.value.status_code, caught.value.body["code"]) == (504, "upstream_timeout")
    (job,) = aai.jobs.values()
    assert job.polls > 3  # it kept asking, with a growing pause, until the deadline
    until(lambda: aai.deleted() == [job.id])


# --- at the provider ----------------------------------------------------------------------------


def provider(model_id: str = "aai-ok/u3") -> assemblyai.AssemblyAIProvider:
    return provider_for(catalog().models[model_id])


def job(**fields) -> TranscriptionJob:
    return TranscriptionJob(AudioUpload(tone_wav(SECONDS), "clip.wav", "audio/wav"), **fields)


def submitted(fake: FakeAssemblyAI, scenario: str = "ok") -> dict:
    (submit,) = [r for r in fake.seen(scenario, "POST") if r.path.endswith("/v2/transcript")]
    return submit.json()


async def deletions_done() -> None:
    await asyncio.gather(*assemblyai._deletions)


async def test_diarization_asks_for_speaker_labels_and_labels_each_sentence(aai):
    transcript = await provider().transcribe(job(diarize=True))
    assert submitted(aai)["speaker_labels"] is True
    assert [(s.speaker, s.text) for s in transcript.segments] == [
        (speaker, f" {text}") for speaker, text in SENTENCES
    ]
    assert [s.id for s in transcript.segments] == [0, 1, 2, 3]
    await deletions_done()


async def test_known_speakers_are_identified_by_name(aai):
    speakers = (KnownSpeaker("Dana", "data:audio/wav;base64,AAAA"),
                KnownSpeaker("Sam", "data:audio/wav;base64,AAAA"))  # fmt: skip
    transcript = await provider().transcribe(job(diarize=True, known_speakers=speakers))
    sent = submitted(aai)
    assert sent["speech_understanding"] == {
        "request": {"speaker_identification": {"speaker_type": "name",
                                               "known_values": ["Dana", "Sam"]}}
    }  # fmt: skip
    names = {"A": "Dana", "B": "Sam"}
    assert [s.speaker for s in transcript.segments] == [names[who] for who, _ in SENTENCES]
    await deletions_done()


async def test_without_diarization_segments_have_no_speaker(aai):
    transcript = await provider().transcribe(job())
    assert "speaker_labels" not in submitted(aai)
    assert {s.speaker for s in transcript.segments} == {None}
    assert transcript.words is None
    await deletions_done()


async def test_the_prompt_becomes_keyterms(aai):
    await provider().transcribe(job(prompt="Acme, Kelly Byrne-Donoghue; order numbers"))
    sent = submitted(aai)
    assert sent["keyterms_prompt"] == ["Acme", "Kelly Byrne-Donoghue", "order numbers"]
    assert "prompt" not in sent
    await deletions_done()


async def test_a_prose_prompt_boosts_nothing_and_prompt_as_prompt_sends_it(aai):
    prose = "A support call between a customer and an agent about a late order"
    await provider().transcribe(job(prompt=prose))
    assert "keyterms_prompt" not in submitted(aai)
    aai.reset()
    await provider("aai-ok/prompted").transcribe(job(prompt=prose))
    assert submitted(aai)["prompt"] == prose
    await deletions_done()


async def test_logprobs_are_refused_before_anything_is_sent(aai):
    with pytest.raises(OpenAIError) as caught:
        await provider().transcribe(job(include_logprobs=True))
    assert (caught.value.status, caught.value.param) == (400, "include[]")
    assert caught.value.code == "unsupported_value"
    assert aai.seen("ok") == []


async def test_a_spilled_upload_is_streamed_whole_and_again_on_a_retry(aai, tmp_path):
    audio = tone_wav(8.0)
    path = tmp_path / "upload.tmp"
    path.write_bytes(audio)
    upload = AudioUpload(filename="clip.wav", content_type="audio/wav", path=str(path))
    transcript = await provider("aai-fail-once/u3").transcribe(TranscriptionJob(upload))
    assert transcript.duration == 8.0
    first, retry = [r for r in aai.seen("fail-once") if r.path.endswith("/upload")]
    assert first.body == retry.body == audio
    assert retry.headers["content-length"] == str(len(audio))
    await deletions_done()


async def test_a_clean_transcription_is_one_attempt_and_a_retry_shows(aai):
    log = start_attempt_log()
    await provider().transcribe(job())
    assert [(a.provider, a.outcome) for a in log.attempts] == [("upstream:aai-ok", "ok")]
    log = start_attempt_log()
    await provider("aai-limited-once/u3").transcribe(job())
    assert [a.outcome for a in log.attempts] == ["429", "ok"]
    log = start_attempt_log()
    with pytest.raises(OpenAIError):
        await provider("aai-job-error/u3").transcribe(job())
    assert [a.outcome for a in log.attempts] == ["error"]
    await deletions_done()


async def test_a_missing_audio_duration_is_measured_so_the_call_is_not_free(aai):
    transcript = await provider("aai-no-duration/u3").transcribe(job())
    assert math.isclose(transcript.duration, SECONDS)
    await deletions_done()


async def test_delete_transcripts_false_keeps_them(aai):
    await provider("aai-ok/kept").transcribe(job())
    assert not assemblyai._deletions  # nothing scheduled
    assert aai.seen("ok", "DELETE") == []


@pytest.mark.django_db(transaction=True)
async def test_a_teams_own_key_is_used_for_every_call(aai, team):
    from asgiref.sync import sync_to_async

    from credentials.models import ProviderCredential

    await sync_to_async(ProviderCredential.store)(team, "aai-ok", TEAM_KEY)
    start_attempt_log(team_id=team.pk)
    await provider().transcribe(job())
    await deletions_done()
    calls = aai.seen("ok")
    assert [r.method for r in calls] == ["POST", "POST", "GET", "GET", "GET", "DELETE"]
    assert {r.headers["authorization"] for r in calls} == {TEAM_KEY}
