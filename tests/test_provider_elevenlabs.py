"""The ElevenLabs provider, driven through the official OpenAI SDK against ARouter, with a
loopback ElevenLabs (tests/vendor_fakes/elevenlabs.py, written from ElevenLabs' public API
reference) as the upstream.

References: https://elevenlabs.io/docs/api-reference/text-to-speech/stream,
https://elevenlabs.io/docs/api-reference/speech-to-text/convert,
https://elevenlabs.io/docs/api-reference/authentication.
"""

import io
import json

import av
import httpx
import openai
import pytest

from gateway.catalog import CatalogError, catalog
from gateway.providers import provider_for
from gateway.providers.base import AudioUpload, TranscriptionJob
from gateway.providers.elevenlabs import (
    DEFAULT_VOICES,
    elevenlabs_error_fields,
    output_plan,
)
from tests.tones import tone_wav
from tests.upstream_helpers import catalog_from, model_table, record_of, upstream_table
from tests.vendor_fakes.elevenlabs import ElevenLabsFake, speech_audio

KEY_ENV = "ARELEVENLABS_TEST_KEY"
WRONG_KEY_ENV = "ARELEVENLABS_WRONG_KEY"
SCENARIOS = ("ok", "limited-once", "limited", "fail-once", "fail", "no-duration", "no-count",
             "reset", "hold")  # fmt: skip
TEXT = "Hello from ElevenLabs, through the gateway."
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 2, "cooldown_after": 50}


def vendor_model(model_id: str, kind: str, upstream: str, target: str, **fields) -> str:
    return model_table(model_id, kind, upstream, target, provider="elevenlabs", **fields)


def elevenlabs_catalog(fake: ElevenLabsFake) -> str:
    text = ""
    for scenario in SCENARIOS:
        text += upstream_table(f"el-{scenario}", fake.url(scenario), KEY_ENV, **FAST)
        text += vendor_model(f"{scenario}/tts", "speech", f"el-{scenario}", "eleven_flash_v2_5",
                             price={"per_million_characters": 50})  # fmt: skip
        text += vendor_model(f"{scenario}/scribe", "transcription", f"el-{scenario}", "scribe_v1",
                             price={"per_audio_minute": 0.0067})  # fmt: skip
    text += upstream_table("el-wrong-key", fake.url("ok"), WRONG_KEY_ENV, **FAST)
    text += vendor_model("wrong-key/tts", "speech", "el-wrong-key", "eleven_flash_v2_5")
    text += vendor_model("wrong-key/scribe", "transcription", "el-wrong-key", "scribe_v1")
    text += vendor_model("unknown/tts", "speech", "el-ok", "eleven_nonexistent_v9")
    text += vendor_model("custom/tts", "speech", "el-ok", "eleven_multilingual_v2",
                         price={"per_million_characters": 100},
                         options={"voices": {"alloy": "SAz9YHcvj6GT2YYXdXww",
                                             "rachel": "21m00Tcm4TlvDq8ikWAM",
                                             "ghost": "ZZZZZZZZZZZZZZZZZZZZ"},
                                  "voice_settings": {"stability": 0.4, "similarity_boost": 0.8},
                                  "output_formats": {"mp3": "pcm_44100",
                                                     "opus": "opus_48000_999"}})  # fmt: skip
    text += vendor_model("v2/scribe", "transcription", "el-ok", "scribe_v2",
                         price={"per_audio_minute": 0.0067})  # fmt: skip
    text += vendor_model("events/scribe", "transcription", "el-ok", "scribe_v1",
                         price={"per_audio_minute": 0.0067},
                         options={"tag_audio_events": True})  # fmt: skip
    return text


@pytest.fixture(scope="module")
def fake():
    server = ElevenLabsFake().start()
    yield server
    server.stop()


@pytest.fixture
def elevenlabs(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    monkeypatch.setenv(WRONG_KEY_ENV, "xi-not-the-right-key")
    fake.reset()
    with catalog_from(tmp_path / "catalog.toml", elevenlabs_catalog(fake)):
        yield fake


def decoded(audio: bytes) -> tuple[str, str, int, float]:
    """(container, codec, sample rate, seconds) of an audio file, as FFmpeg reads it."""
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return container.format.name, stream.codec_context.name, stream.rate, samples / stream.rate


def fake_seconds(text: str) -> float:
    return max(0.5, len(text) * 0.05)  # the fake's speech lasts 50 ms a character


def speech(client: openai.OpenAI, model: str = "ok/tts", **fields) -> tuple[bytes, str]:
    fields = {"voice": "nova", "input": TEXT, **fields}
    with client.audio.speech.with_streaming_response.create(model=model, **fields) as response:
        return response.read(), response.headers["content-type"]


# --- text to speech ------------------------------------------------------------------------------


def test_speech_is_streamed_from_the_voice_model_and_format_asked(openai_client, elevenlabs):
    audio, content_type = speech(openai_client)
    assert content_type == "audio/mpeg"
    container, codec, rate, seconds = decoded(audio)
    assert (container, codec, rate) == ("mp3", "mp3float", 44100)
    assert seconds == pytest.approx(fake_seconds(TEXT), abs=0.1)
    (seen,) = elevenlabs.seen("ok")
    assert seen.path == f"/v1/text-to-speech/{DEFAULT_VOICES['nova']}/stream"
    assert seen.query == {"output_format": ["mp3_44100_128"]}
    assert seen.json == {"text": TEXT, "model_id": "eleven_flash_v2_5"}  # speed 1: no settings
    assert seen.headers["xi-api-key"] == elevenlabs.api_key
    assert "authorization" not in seen.headers
    record = record_of("ok/tts")
    assert (record.status_code, record.provider) == (200, "upstream:el-ok")
    assert record.characters == len(TEXT)
    assert record.cost > 0


def test_pcm_is_elevenlabs_pcm_24000_byte_for_byte(openai_client, elevenlabs):
    audio, content_type = speech(openai_client, response_format="pcm")
    assert content_type == "audio/pcm"
    assert audio == speech_audio(TEXT, "pcm_24000")[0]
    assert elevenlabs.seen("ok")[0].query == {"output_format": ["pcm_24000"]}
    assert record_of("ok/tts").audio_seconds_out == pytest.approx(len(audio) / 48_000)


def test_opus_is_elevenlabs_ogg_opus(openai_client, elevenlabs):
    audio, content_type = speech(openai_client, response_format="opus")
    assert content_type == "audio/opus"
    assert audio[:4] == b"OggS"
    assert decoded(audio)[:2] == ("ogg", "opus")
    assert elevenlabs.seen("ok")[0].query == {"output_format": ["opus_48000_64"]}


@pytest.mark.parametrize(
    ("response_format", "container", "codec"),
    [("wav", "wav", "pcm_s16le"), ("flac", "flac", "flac"), ("aac", "aac", "aac")],
)
def test_formats_elevenlabs_lacks_are_encoded_here_from_its_pcm(
    openai_client, elevenlabs, response_format, container, codec
):
    audio, content_type = speech(openai_client, response_format=response_format)
    assert content_type == f"audio/{response_format}"
    got_container, got_codec, rate, seconds = decoded(audio)
    assert (got_container, got_codec, rate) == (container, codec, 24_000)
    assert seconds == pytest.approx(fake_seconds(TEXT), abs=0.1)  # AAC decodes ~70 ms short
    if response_format == "wav":  # OpenAI's streamed WAV: sizes unknown when the head left
        assert audio[4:8] == b"\xff\xff\xff\xff"
    assert elevenlabs.seen("ok")[0].query == {"output_format": ["pcm_24000"]}
    assert record_of("ok/tts").audio_seconds_out == pytest.approx(fake_seconds(TEXT), abs=0.05)


def test_speech_leaves_before_elevenlabs_has_finished(openai_client, elevenlabs):
    with openai_client.audio.speech.with_streaming_response.create(
        model="hold/tts", voice="alloy", input=TEXT, response_format="pcm"
    ) as response:
        pieces = response.iter_bytes()
        first = next(pieces)
        assert first  # the first chunk is here while ElevenLabs still holds the rest
        assert elevenlabs.streams_finished == 0
        elevenlabs.release.set()
        audio = first + b"".join(pieces)
    assert audio == speech_audio(TEXT, "pcm_24000")[0]
    assert elevenlabs.streams_finished == 1


def test_speech_sse_carries_the_audio_and_the_cost(openai_client, elevenlabs):
    with openai_client.audio.speech.with_streaming_response.create(
        model="ok/tts", voice="sage", input=TEXT, response_format="pcm", stream_format="sse"
    ) as response:
        body = response.read().decode()
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["cost"] > 0


def test_speed_goes_in_voice_settings_within_elevenlabs_range(openai_client, elevenlabs):
    speech(openai_client, speed=1.15)
    assert elevenlabs.seen("ok")[0].json["voice_settings"] == {"speed": 1.15}


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_a_speed_elevenlabs_cannot_do_is_refused_not_clamped(openai_client, elevenlabs, speed):
    with pytest.raises(openai.BadRequestError) as caught:
        speech(openai_client, speed=speed)
    assert (caught.value.param, caught.value.code) == ("speed", "unsupported_value")
    assert "0.7 to 1.2" in caught.value.message
    assert elevenlabs.requests == []


def test_catalog_voices_settings_and_formats(openai_client, elevenlabs):
    speech(openai_client, model="custom/tts", voice="rachel", speed=0.9)
    seen = elevenlabs.seen("ok")[0]
    assert seen.path == "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream"
    assert seen.json["model_id"] == "eleven_multilingual_v2"
    assert seen.json["voice_settings"] == {"stability": 0.4, "similarity_boost": 0.8, "speed": 0.9}
    # mp3 made here from ElevenLabs' pcm_44100, as the entry's output_formats says.
    audio, content_type = speech(openai_client, model="custom/tts", voice="alloy")
    assert elevenlabs.seen("ok")[1].query == {"output_format": ["pcm_44100"]}
    assert content_type == "audio/mpeg"
    assert decoded(audio)[0] == "mp3"
    voices = httpx.get(
        f"{openai_client.base_url}audio/voices",
        params={"model": "custom/tts"},
        headers={"authorization": f"Bearer {openai_client.api_key}"},
    ).json()["data"]
    assert {v["id"]: v["voice"] for v in voices}["rachel"] == "21m00Tcm4TlvDq8ikWAM"
    with pytest.raises(openai.BadRequestError) as caught:  # not in this entry's map
        speech(openai_client, model="custom/tts", voice="nova")
    assert caught.value.param == "voice"


def test_characters_are_elevenlabs_count_when_it_gives_one(openai_client, elevenlabs):
    elevenlabs.character_count = 7
    speech(openai_client)
    assert record_of("ok/tts").characters == 7
    speech(openai_client, model="no-count/tts")
    assert record_of("no-count/tts").characters == len(TEXT)


def test_elevenlabs_refusals_keep_its_message_and_status(openai_client, elevenlabs):
    with pytest.raises(openai.BadRequestError) as caught:
        speech(openai_client, model="unknown/tts")
    assert caught.value.code == "model_not_found"
    assert "eleven_nonexistent_v9" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        speech(openai_client, model="custom/tts", voice="ghost")
    assert caught.value.code == "voice_not_found"
    # A validation error (a format this ElevenLabs does not have) names OpenAI's param.
    with pytest.raises(openai.BadRequestError) as caught:
        speech(openai_client, model="custom/tts", voice="alloy", response_format="opus")
    assert caught.value.param == "response_format"
    assert "Invalid value for 'response_format': Input should be" in caught.value.message
    assert str(elevenlabs.port) not in caught.value.message
    assert record_of("unknown/tts").status_code == 400


def test_a_rejected_key_is_the_gateways_problem(openai_client, elevenlabs):
    with pytest.raises(openai.APIStatusError) as caught:
        speech(openai_client, model="wrong-key/tts")
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_auth_failed")
    assert "xi-not-the-right-key" not in caught.value.message
    assert len(elevenlabs.seen("ok")) == 1  # a 401 is not retried


def test_rate_limits_and_failures_are_retried_then_mapped(openai_client, elevenlabs):
    audio, _ = speech(openai_client, model="limited-once/tts")
    assert decoded(audio)[0] == "mp3"
    assert record_of("limited-once/tts").attempts == 2
    speech(openai_client, model="fail-once/tts")
    assert record_of("fail-once/tts").attempts == 2
    with pytest.raises(openai.RateLimitError) as caught:
        speech(openai_client, model="limited/tts")
    assert "Too many concurrent requests" in caught.value.message
    assert len(elevenlabs.seen("limited")) == 3  # max_retries = 2
    with pytest.raises(openai.APIStatusError) as caught:
        speech(openai_client, model="fail/tts")
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")


def test_a_stream_broken_by_elevenlabs_ends_the_body_early(openai_client, elevenlabs):
    whole = speech_audio(TEXT, "pcm_24000")[0]
    with openai_client.audio.speech.with_streaming_response.create(
        model="reset/tts", voice="alloy", input=TEXT, response_format="pcm"
    ) as response:
        received = response.read()  # headers had gone: the body can only end short
    assert 0 < len(received) < len(whole)
    assert record_of("reset/tts").characters == len(TEXT)  # what was made is billed


# --- speech to text ---------------------------------------------------------------------------


def transcribe(client: openai.OpenAI, model: str = "ok/scribe", seconds: float = 4.0, **fields):
    return client.audio.transcriptions.create(
        model=model, file=("talk.wav", tone_wav(seconds), "audio/wav"), **fields
    )


def test_transcription_sends_scribes_form_and_answers_json(openai_client, elevenlabs):
    transcript = transcribe(openai_client)
    assert transcript.text.startswith("Hello there friend. How are you?")
    assert transcript.usage.seconds == 4
    seen = elevenlabs.seen("ok")[0]
    assert (seen.method, seen.path) == ("POST", "/v1/speech-to-text")
    assert seen.headers["xi-api-key"] == elevenlabs.api_key
    assert seen.form == {"model_id": ["scribe_v1"], "timestamps_granularity": ["word"],
                         "diarize": ["false"], "tag_audio_events": ["false"]}  # fmt: skip
    assert seen.file_name == "talk.wav"
    record = record_of("ok/scribe")
    assert (record.provider, record.audio_seconds_in) == ("upstream:el-ok", 4)
    assert record.cost > 0


def test_verbose_json_has_words_and_sentence_segments(openai_client, elevenlabs):
    transcript = transcribe(
        openai_client,
        language="en",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert elevenlabs.seen("ok")[0].form["language_code"] == ["en"]
    assert (transcript.language, transcript.duration) == ("english", 4.0)
    assert [w.word for w in transcript.words][:4] == ["Hello", "there", "friend.", "How"]
    assert transcript.words[0].start == pytest.approx(0.2)
    # Cut at sentence ends; the fake's third sentence is cut short by the end of the audio.
    segments = [s.text for s in transcript.segments]
    assert segments == [" Hello there friend.", " How are you?", " Fine"]
    first = transcript.segments[0]
    assert (first.start, first.end) == (pytest.approx(0.2), pytest.approx(1.3))
    assert first.avg_logprob == pytest.approx(-0.1)
    assert first.compression_ratio > 0


def test_text_srt_and_vtt(openai_client, elevenlabs):
    text = transcribe(openai_client, response_format="text")
    assert text.startswith("Hello there friend.")
    srt = transcribe(openai_client, response_format="srt")
    assert srt.startswith("1\n00:00:00,200 --> 00:00:01,300\nHello there friend.\n\n2\n")
    vtt = transcribe(openai_client, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.200 --> 00:00:01.300\nHello there friend.\n")


def test_streamed_transcription(openai_client, elevenlabs):
    events = list(transcribe(openai_client, stream=True))
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert events[-1].type == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]).strip() == events[-1].text.strip()
    assert record_of("ok/scribe").audio_seconds_in == 4


def test_without_elevenlabs_duration_the_upload_is_measured(openai_client, elevenlabs):
    transcript = transcribe(openai_client, model="no-duration/scribe", seconds=3.0)
    assert transcript.usage.seconds == 3
    assert record_of("no-duration/scribe").cost > 0


def test_audio_events_when_the_entry_asks_for_them(openai_client, elevenlabs):
    transcript = transcribe(
        openai_client,
        model="events/scribe",
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert elevenlabs.seen("ok")[0].form["tag_audio_events"] == ["true"]
    assert "(laughter)" in transcript.text
    assert [s.text for s in transcript.segments][:3] == [
        " Hello there friend.",
        " (laughter)",
        " How are you?",
    ]
    assert "(laughter)" not in [w.word for w in transcript.words]


def test_the_prompt_is_scribe_v2s_key_terms(openai_client, elevenlabs):
    prompt = "ElevenLabs, ARouter; Kelly Byrne-Donoghue\nthis phrase has far too many words in it"
    transcribe(openai_client, model="v2/scribe", prompt=prompt)
    sent = elevenlabs.seen("ok")[0].form
    assert (sent["model_id"], sent["keyterms"]) == (
        ["scribe_v2"],
        ['["ElevenLabs", "ARouter", "Kelly Byrne-Donoghue"]'],
    )
    transcribe(openai_client, prompt=prompt)  # Scribe v1 has no key terms
    assert "keyterms" not in elevenlabs.seen("ok")[1].form


def test_a_teams_own_key_is_sent_for_it(openai_client, elevenlabs, live_key):
    from credentials.models import ProviderCredential

    ProviderCredential.store(live_key.api_key.team, "el-ok", "xi-team-own-key-4321")
    elevenlabs.keys.add("xi-team-own-key-4321")
    speech(openai_client)
    transcribe(openai_client)
    assert [s.headers["xi-api-key"] for s in elevenlabs.seen("ok")] == ["xi-team-own-key-4321"] * 2


def test_translation_is_refused(openai_client, elevenlabs):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.translations.create(
            model="ok/scribe", file=("talk.wav", tone_wav(2.0), "audio/wav")
        )
    assert (caught.value.param, caught.value.code) == ("model", "unsupported_value")
    assert elevenlabs.requests == []


def test_transcription_errors_and_retries(openai_client, elevenlabs):
    with pytest.raises(openai.APIStatusError) as caught:
        transcribe(openai_client, model="wrong-key/scribe")
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_auth_failed")
    with pytest.raises(openai.RateLimitError):
        transcribe(openai_client, model="limited/scribe")
    transcript = transcribe(openai_client, model="fail-once/scribe")
    assert transcript.text
    record = record_of("fail-once/scribe")
    assert (record.attempts, record.audio_seconds_in) == (2, 4)
    assert len(elevenlabs.seen("fail-once")[1].file_bytes) == len(tone_wav(4.0))  # sent again


# --- diarization and log-probabilities ----------------------------------------------------------


def test_diarized_json_names_each_sentences_speaker(openai_client, elevenlabs):
    transcript = transcribe(
        openai_client, response_format="diarized_json", chunking_strategy="auto"
    )
    assert [(s.id, s.speaker, s.text) for s in transcript.segments] == [
        ("seg_000", "A", "Hello there friend."),
        ("seg_001", "B", "How are you?"),
        ("seg_002", "A", "Fine"),
    ]
    assert transcript.duration == 4.0
    assert elevenlabs.seen("ok")[0].form["diarize"] == ["true"]
    assert record_of("ok/scribe").cost > 0


def test_a_diarized_stream_sends_each_segment_with_its_speaker(openai_client, elevenlabs):
    events = list(
        transcribe(
            openai_client, response_format="diarized_json", chunking_strategy="auto", stream=True
        )
    )
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert [(s.speaker, s.text) for s in segments] == [
        ("A", "Hello there friend."), ("B", "How are you?"), ("A", "Fine")
    ]  # fmt: skip
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [d.segment_id for d in deltas] == ["seg_000", "seg_001", "seg_002"]
    assert events[-1].type == "transcript.text.done"


def test_server_vad_silence_is_where_segments_end(openai_client, elevenlabs):
    transcript = transcribe(
        openai_client,
        response_format="diarized_json",
        chunking_strategy={"type": "server_vad", "silence_duration_ms": 50},
    )
    # The fake leaves 0.1 s between words: each word is a segment of its own.
    assert [s.text for s in transcript.segments][:4] == ["Hello", "there", "friend.", "How"]


def test_include_logprobs_gives_each_words_logprob(openai_client, elevenlabs):
    transcript = transcribe(openai_client, include=["logprobs"])
    assert [p.token for p in transcript.logprobs][:4] == ["Hello", " there", " friend.", " How"]
    assert transcript.logprobs[0].logprob == pytest.approx(-0.05)


# --- the provider's own answer -------------------------------------------------------------------


def job(**fields) -> TranscriptionJob:
    return TranscriptionJob(AudioUpload(tone_wav(6.0), "talk.wav", "audio/wav"), **fields)


async def test_diarized_segments_are_labelled_by_order_of_appearance(elevenlabs):
    provider = provider_for(catalog().models["ok/scribe"])
    transcript = await provider.transcribe(job(diarize=True))
    assert elevenlabs.seen("ok")[0].form["diarize"] == ["true"]
    assert [s.speaker for s in transcript.segments] == ["A", "B", "A", "B"]
    assert transcript.segments[1].text == " How are you?"


async def test_word_logprobs_carry_their_leading_space(elevenlabs):
    provider = provider_for(catalog().models["ok/scribe"])
    transcript = await provider.transcribe(job(include_logprobs=True))
    tokens = transcript.logprobs
    assert [t.token for t in tokens[:3]] == ["Hello", " there", " friend."]
    assert [t.logprob for t in tokens[:3]] == pytest.approx([-0.05, -0.1, -0.15])
    assert tokens[1].bytes == list(b" there")
    assert [p for segment in transcript.segments for p in segment.logprobs] == tokens
    assert transcript.segments[1].logprobs[0].token == " How"
    plain = await provider.transcribe(job())
    assert plain.logprobs is None
    assert plain.segments[0].logprobs is None


# --- the pieces ----------------------------------------------------------------------------------


def test_error_bodies_in_each_of_elevenlabs_shapes():
    status = {"detail": {"status": "quota_exceeded", "message": "You have 3 credits left."}}
    assert elevenlabs_error_fields(status) == ("You have 3 credits left.", None, "quota_exceeded")
    assert elevenlabs_error_fields({"detail": "Not Found"}) == ("Not Found", None, None)
    validation = {"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required"}]}
    assert elevenlabs_error_fields(validation) == (
        "Invalid value for 'input': Field required",
        "input",
        "invalid_value",
    )
    assert elevenlabs_error_fields("<html>") == ("", None, None)


def test_output_plans():
    assert output_plan("pcm", "pcm_24000").pcm_rate is None  # passed through
    assert output_plan("pcm", "pcm_16000").pcm_rate == 16_000  # resampled here
    assert output_plan("flac", "pcm_22050").pcm_rate == 22_050
    assert output_plan("mp3", "mp3_22050_32").pcm_rate is None
    with pytest.raises(ValueError, match="cannot be served as OpenAI's aac"):
        output_plan("aac", "mp3_44100_128")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"output_formats": {"wav": "mp3_44100_128"}}, "cannot be served as OpenAI's wav"),
        ({"output_formats": {"ogg": "opus_48000_64"}}, "not one of OpenAI's speech formats"),
        ({"output_formats": {"pcm": "pcm_fast"}}, "names no sample rate"),
        ({"voices": "alloy"}, "voices: must be a table"),
        ({"prompt_as": "prompt"}, "prompt_as: must be one of"),
    ],
)
def test_options_the_provider_cannot_follow_are_catalog_errors(tmp_path, fake, options, problem):
    text = upstream_table("el", fake.url("ok"), KEY_ENV)
    text += vendor_model("bad/tts", "speech", "el", "eleven_flash_v2_5", options=options)
    with catalog_from(tmp_path / "catalog.toml", text), pytest.raises(CatalogError, match=problem):
        provider_for(catalog().models["bad/tts"])
