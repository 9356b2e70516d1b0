"""DeepgramProvider against the loopback fake Deepgram (tests/vendor_fakes/deepgram.py):
the official SDK talks to ARouter, ARouter to the fake, over real sockets. Every response
format, streaming both ways, diarization, key terms, each error mapping, retries, the
ledger; a few provider-level tests watch what only the provider shows (chunk timing via
the fake's gate, a spilled upload resent on a retry)."""

import asyncio
import io
import json
import math

import av
import httpx
import openai
import pytest

from core.errors import OpenAIError
from gateway.catalog import CatalogError, catalog
from gateway.providers import provider_for
from gateway.providers.attempts import start_attempt_log
from gateway.providers.base import (
    AudioUpload,
    KnownSpeaker,
    SpeechJob,
    SpeechMeter,
    TranscriptionJob,
    speaker_label,
)
from gateway.providers.deepgram import (
    DEFAULT_VOICES,
    deepgram_error_fields,
    speech_parts,
)
from tests.tones import tone_wav
from tests.upstream_helpers import catalog_from, model_table, record_of, upstream_table
from tests.vendor_fakes.deepgram import API_KEY, SCRIPT, FakeDeepgram, start_fake

KEY_ENV = "ARDEEPGRAM_TEST_KEY"
WRONG_KEY_ENV = "ARDEEPGRAM_WRONG_KEY"
SCRIPT_TEXT = " ".join(line for _, line in SCRIPT)
SCENARIOS = ("ok", "limited-once", "limited", "fail-once", "fail", "reset", "gated", "unpaid")


@pytest.fixture(scope="module")
def fake():
    server = FakeDeepgram().start()
    yield server
    server.stop()


def deepgram_model(model_id: str, kind: str, upstream: str, target: str, **fields) -> str:
    table = model_table(model_id, kind, upstream, target, **fields)
    return table.replace('provider = "upstream"', 'provider = "deepgram"', 1)


def deepgram_catalog(fake: FakeDeepgram) -> str:
    fast = {"backoff_base": 0.01, "backoff_max": 0.05, "cooldown_after": 50}
    stt_price = {"per_audio_minute": 0.0043}
    tts_price = {"per_million_characters": 30}
    text = ""
    for scenario in SCENARIOS:
        text += upstream_table(f"dg-{scenario}", fake.url(scenario), KEY_ENV, **fast)
        text += deepgram_model(f"{scenario}/nova-3", "transcription", f"dg-{scenario}", "nova-3",
                               price=stt_price)  # fmt: skip
        text += deepgram_model(f"{scenario}/aura-2", "speech", f"dg-{scenario}", "aura-2",
                               price=tts_price)  # fmt: skip
    text += deepgram_model("ok/nova-2", "transcription", "dg-ok", "nova-2", price=stt_price)
    text += deepgram_model("ok/nova-9", "transcription", "dg-ok", "nova-9", price=stt_price)
    text += deepgram_model("ok/aura-own-voices", "speech", "dg-ok", "aura-2", price=tts_price,
                           options={"voices": {"alloy": "aura-asteria-en",
                                               "narrator": "aura-2-nope-xx1"}})  # fmt: skip
    text += deepgram_model(
        "ok/nova-3-multi",
        "transcription",
        "dg-ok",
        "nova-3",
        options={
            "language": "multi",
            "prompt_terms": "none",
            "query": {"numerals": True, "tag": ["a", "b"]},
        },
    )
    for option, value in (
        ("prompt_terms", "sometimes"),
        ("voices", "alloy"),
        ("query", 1),
        ("max_input_characters", 50),
        ("language", 7),
    ):
        text += deepgram_model(
            f"bad/{option}", "speech", "dg-ok", "aura-2", options={option: value}
        )
    text += upstream_table("dg-badkey", fake.url("ok"), WRONG_KEY_ENV, **fast)
    text += deepgram_model("badkey/nova-3", "transcription", "dg-badkey", "nova-3")
    text += deepgram_model("badkey/aura-2", "speech", "dg-badkey", "aura-2")
    return text


@pytest.fixture
def deepgram(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, fake.api_key)
    monkeypatch.setenv(WRONG_KEY_ENV, "dg-not-the-key")
    fake.reset()
    with catalog_from(tmp_path / "catalog.toml", deepgram_catalog(fake)):
        yield fake


WAV = tone_wav(3.0)


def provider(model_id: str):
    return provider_for(catalog().models[model_id])


def decoded(audio: bytes) -> tuple[str, str, float]:
    """(container, codec, seconds) of an audio file, by decoding all of it."""
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return container.format.name, stream.codec_context.name, samples / stream.rate


# --- speech to text -------------------------------------------------------------------------


def test_transcription_sends_the_audio_as_deepgram_reads_it(openai_client, deepgram):
    transcript = openai_client.audio.transcriptions.create(
        model="ok/nova-3", file=("call.wav", WAV, "audio/wav")
    )
    assert transcript.text == SCRIPT_TEXT
    [seen] = deepgram.seen("ok")
    assert (seen.method, seen.path) == ("POST", "/ok/v1/listen")
    assert seen.headers["authorization"] == f"Token {deepgram.api_key}"
    assert seen.headers["content-type"] == "audio/wav"
    assert seen.body == WAV  # the upload itself, not a multipart form
    assert seen.query == {
        "model": ["nova-3"],
        "smart_format": ["true"],
        "punctuate": ["true"],
        "utterances": ["true"],
        "detect_language": ["true"],
    }


def test_verbose_json_has_deepgrams_duration_utterances_and_words(openai_client, deepgram):
    transcript = openai_client.audio.transcriptions.create(
        model="ok/nova-3",
        file=("call.wav", WAV),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert (transcript.language, transcript.duration) == ("english", 3.0)
    assert [s.text for s in transcript.segments] == [" " + line for _, line in SCRIPT]
    assert [s.id for s in transcript.segments] == [0, 1, 2]
    assert transcript.segments[0].start == 0.0
    assert transcript.segments[-1].end <= 3.0
    assert transcript.segments[0].avg_logprob == pytest.approx(math.log(0.96))
    words = SCRIPT_TEXT.split()
    assert [w.word for w in transcript.words] == words  # punctuated, as the text has them
    assert all(w.start < w.end for w in transcript.words)


def test_language_is_sent_and_reported_by_name(openai_client, deepgram):
    transcript = openai_client.audio.transcriptions.create(
        model="ok/nova-3", file=("call.wav", WAV), language="es", response_format="verbose_json"
    )
    assert transcript.language == "spanish"
    [seen] = deepgram.seen("ok")
    assert seen.query["language"] == ["es"]
    assert "detect_language" not in seen.query


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ("text", SCRIPT_TEXT + "\n"),
        ("srt", "1\n00:00:00,000 --> 00:00:00,"),
        ("vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:00."),
    ],
)
def test_text_srt_and_vtt(openai_client, deepgram, response_format, expected):
    body = openai_client.audio.transcriptions.create(
        model="ok/nova-3", file=("call.wav", WAV), response_format=response_format
    )
    assert body.startswith(expected)
    if response_format != "text":
        assert body.count(" --> ") == len(SCRIPT)
        assert SCRIPT[1][1] in body


def test_the_prompt_becomes_keyterms_for_nova_3_and_keywords_for_nova_2(openai_client, deepgram):
    prompt = "Acme, Zorblax;\nKubernetes"
    openai_client.audio.transcriptions.create(model="ok/nova-3", file=("a.wav", WAV), prompt=prompt)
    openai_client.audio.transcriptions.create(model="ok/nova-2", file=("a.wav", WAV), prompt=prompt)
    nova_3, nova_2 = deepgram.seen("ok")
    assert nova_3.query["keyterm"] == ["Acme", "Zorblax", "Kubernetes"]
    assert nova_2.query["keywords"] == ["Acme", "Zorblax", "Kubernetes"]
    assert "keywords" not in nova_3.query
    assert "keyterm" not in nova_2.query


async def test_catalog_options_add_deepgram_parameters(deepgram):
    job = TranscriptionJob(upload=AudioUpload(WAV, "call.wav"), prompt="Acme, Zorblax")
    await provider("ok/nova-3-multi").transcribe(job)
    [seen] = deepgram.seen("ok")
    assert seen.query["language"] == ["multi"]
    assert (seen.query["numerals"], seen.query["tag"]) == (["true"], ["a", "b"])
    assert "keyterm" not in seen.query
    assert "detect_language" not in seen.query


@pytest.mark.parametrize(
    "option", ["prompt_terms", "voices", "query", "max_input_characters", "language"]
)
def test_options_it_cannot_follow_are_catalog_errors(deepgram, option):
    with pytest.raises(CatalogError, match=f"options.{option}"):
        provider(f"bad/{option}")


def test_streamed_transcription_sends_each_utterance_then_done(openai_client, deepgram):
    events = list(
        openai_client.audio.transcriptions.create(
            model="ok/nova-3", file=("call.wav", WAV), stream=True
        )
    )
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) == len(SCRIPT)
    assert "".join(deltas) == SCRIPT_TEXT
    done = events[-1]
    assert (done.type, done.text) == ("transcript.text.done", SCRIPT_TEXT)
    assert done.usage.input_tokens > 0


async def test_diarization_labels_speakers_in_the_order_they_speak(deepgram):
    job = TranscriptionJob(upload=AudioUpload(WAV, "call.wav", "audio/wav"), diarize=True)
    transcript = await provider("ok/nova-3").transcribe(job)
    # The fake's speakers are 0, 1, 0: A, B, A.
    assert [(s.speaker, s.text.strip()) for s in transcript.segments] == [
        ("A", SCRIPT[0][1]),
        ("B", SCRIPT[1][1]),
        ("A", SCRIPT[2][1]),
    ]
    assert deepgram.seen("ok")[0].query["diarize"] == ["true"]


async def test_known_speakers_are_refused_not_answered_as_letters(deepgram):
    upload = AudioUpload(WAV, "call.wav", "audio/wav")
    job = TranscriptionJob(upload, diarize=True, known_speakers=(KnownSpeaker("Ann", "data:"),))
    with pytest.raises(OpenAIError) as caught:
        await provider("ok/nova-3").transcribe(job)
    assert (caught.value.param, caught.value.code) == ("known_speaker_names[]", "unsupported_value")
    assert deepgram.requests == []


def test_diarized_json_names_each_utterances_speaker(openai_client, deepgram):
    transcript = openai_client.audio.transcriptions.create(
        model="ok/nova-3",
        file=("call.wav", WAV),
        response_format="diarized_json",
        chunking_strategy="auto",
    )
    assert transcript.text == SCRIPT_TEXT
    assert [(s.id, s.speaker, s.text) for s in transcript.segments] == [
        ("seg_000", "A", SCRIPT[0][1]),
        ("seg_001", "B", SCRIPT[1][1]),
        ("seg_002", "A", SCRIPT[2][1]),
    ]
    assert transcript.duration == 3.0
    [seen] = deepgram.seen("ok")
    assert seen.query["diarize"] == ["true"]
    assert "utt_split" not in seen.query  # "auto": Deepgram's own pauses


def test_a_diarized_stream_sends_each_segment_with_its_speaker(openai_client, deepgram):
    events = list(
        openai_client.audio.transcriptions.create(
            model="ok/nova-3",
            file=("call.wav", WAV),
            response_format="diarized_json",
            chunking_strategy="auto",
            stream=True,
        )
    )
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert [(s.speaker, s.text) for s in segments] == [("A", SCRIPT[0][1]), ("B", SCRIPT[1][1]),
                                                       ("A", SCRIPT[2][1])]  # fmt: skip
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [d.segment_id for d in deltas] == ["seg_000", "seg_001", "seg_002"]
    assert events[-1].type == "transcript.text.done"


def test_server_vad_silence_is_deepgrams_utterance_split(openai_client, deepgram):
    openai_client.audio.transcriptions.create(
        model="ok/nova-3",
        file=("call.wav", WAV),
        response_format="diarized_json",
        chunking_strategy={"type": "server_vad", "silence_duration_ms": 500},
    )
    assert deepgram.seen("ok")[0].query["utt_split"] == ["0.5"]


def test_include_logprobs_gives_each_words_confidence(openai_client, deepgram):
    transcript = openai_client.audio.transcriptions.create(
        model="ok/nova-3", file=("call.wav", WAV), include=["logprobs"]
    )
    assert [p.token for p in transcript.logprobs] == SCRIPT_TEXT.split()
    assert transcript.logprobs[0].logprob == pytest.approx(math.log(0.95))


def test_speaker_labels_go_on_past_z():
    assert [speaker_label(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "A", "B", "Z", "AA", "AB", "ZZ", "AAA"
    ]  # fmt: skip


async def test_without_diarization_no_speaker_is_claimed(deepgram):
    job = TranscriptionJob(upload=AudioUpload(WAV, "call.wav", "audio/wav"))
    transcript = await provider("ok/nova-3").transcribe(job)
    assert {s.speaker for s in transcript.segments} == {None}
    assert "diarize" not in deepgram.seen("ok")[0].query


async def test_logprobs_are_the_words_confidences_for_the_whole_and_each_segment(deepgram):
    job = TranscriptionJob(upload=AudioUpload(WAV, "call.wav"), include_logprobs=True)
    transcript = await provider("ok/nova-3").transcribe(job)
    assert [p.token for p in transcript.logprobs] == SCRIPT_TEXT.split()
    assert transcript.logprobs[0].logprob == pytest.approx(math.log(0.95))
    assert transcript.logprobs[0].bytes == list(b"Hello,")
    by_segment = [p for segment in transcript.segments for p in segment.logprobs]
    assert by_segment == transcript.logprobs


def test_translation_is_refused_before_deepgram_is_asked(openai_client, deepgram):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.translations.create(model="ok/nova-3", file=("call.wav", WAV))
    error = caught.value.body
    assert (error["param"], error["code"]) == ("model", "model_not_supported")
    assert "does not translate" in error["message"]
    assert deepgram.requests == []


async def test_a_spilled_upload_is_streamed_from_its_file_and_again_on_a_retry(deepgram, tmp_path):
    path = tmp_path / "spilled.wav"
    path.write_bytes(WAV)
    job = TranscriptionJob(upload=AudioUpload(filename="spilled.wav", path=str(path)))
    log = start_attempt_log()
    transcript = await provider("limited-once/nova-3").transcribe(job)
    assert transcript.duration == 3.0
    assert [a.outcome for a in log.attempts] == ["429", "ok"]
    first, second = deepgram.seen("limited-once")
    assert first.body == second.body == WAV
    assert second.headers["content-type"] == "application/octet-stream"  # no part type given


def test_a_teams_own_key_is_sent_as_its_token(openai_client, deepgram, live_key):
    from credentials.models import ProviderCredential

    # The catalog's key for this upstream is wrong; the team's own key is the right one.
    ProviderCredential.store(live_key.api_key.team, "dg-badkey", deepgram.api_key)
    transcript = openai_client.audio.transcriptions.create(
        model="badkey/nova-3", file=("call.wav", WAV)
    )
    assert transcript.text == SCRIPT_TEXT
    assert deepgram.requests[-1].headers["authorization"] == f"Token {deepgram.api_key}"


# --- billing --------------------------------------------------------------------------------


def test_transcription_is_billed_on_deepgrams_duration(openai_client, deepgram):
    openai_client.audio.transcriptions.create(model="ok/nova-3", file=("call.wav", WAV))
    record = record_of("ok/nova-3")
    assert (record.status_code, record.provider, record.attempts) == (200, "upstream:dg-ok", 1)
    assert record.audio_seconds_in == 3
    assert float(record.cost) == pytest.approx(3 / 60 * 0.0043)


def test_speech_is_billed_on_deepgrams_character_count(openai_client, deepgram):
    text = "Billing counts every character."
    openai_client.audio.speech.create(model="ok/aura-2", voice="alloy", input=text).read()
    record = record_of("ok/aura-2")
    assert (record.status_code, record.characters) == (200, len(text))
    assert float(record.cost) == pytest.approx(len(text) * 30 / 1_000_000)


# --- text to speech -------------------------------------------------------------------------

SPEECH_CASES = {
    # format: (Deepgram's query beyond model, (container, codec) the client gets)
    "mp3": ({"encoding": ["mp3"]}, ("mp3", "mp3float")),
    "opus": ({"encoding": ["opus"], "container": ["ogg"]}, ("ogg", "opus")),
    "aac": ({"encoding": ["aac"]}, ("aac", "aac")),
    "flac": ({"encoding": ["flac"]}, ("flac", "flac")),
    "wav": (
        {"encoding": ["linear16"], "container": ["wav"], "sample_rate": ["24000"]},
        ("wav", "pcm_s16le"),
    ),
    "pcm": ({"encoding": ["linear16"], "container": ["none"], "sample_rate": ["24000"]}, None),
}


@pytest.mark.parametrize("response_format", list(SPEECH_CASES))
def test_each_format_is_asked_of_deepgram_natively(openai_client, deepgram, response_format):
    query, expected = SPEECH_CASES[response_format]
    text = "Every format is Deepgram's own."
    with openai_client.audio.speech.with_streaming_response.create(
        model="ok/aura-2", voice="onyx", input=text, response_format=response_format
    ) as response:
        content_type = response.headers["content-type"]
        audio = b"".join(response.iter_bytes())
    [seen] = deepgram.seen("ok")
    assert (seen.method, seen.path) == ("POST", "/ok/v1/speak")
    assert seen.headers["authorization"] == f"Token {deepgram.api_key}"
    assert seen.json() == {"text": text}
    assert seen.query == {"model": [DEFAULT_VOICES["onyx"]], **query}
    openai_types = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac",
                    "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}  # fmt: skip
    assert content_type == openai_types[response_format]
    seconds = len(text) * 0.01  # the fake speaks 10 ms a character
    if expected is None:
        assert len(audio) == pytest.approx(seconds * 24_000 * 2, abs=4)
    else:
        container, codec, duration = decoded(audio)
        assert (container, codec) == expected
        assert duration == pytest.approx(seconds, abs=0.1)  # codec padding (AAC: 1024)


async def test_speech_bytes_are_passed_on_as_they_arrive(deepgram):
    """The fake sends its first chunk, then waits for the gate: the first chunk reaches us
    while the rest does not exist yet."""
    meter = SpeechMeter()
    audio = provider("gated/aura-2").synthesize(SpeechJob("Gated speech.", "alloy", "pcm"), meter)
    try:
        first = await asyncio.wait_for(anext(audio), timeout=10)
        assert len(first) > 0
        assert meter.characters == len("Gated speech.")
    finally:
        deepgram.gate.set()
    rest = b"".join([chunk async for chunk in audio])
    assert len(first + rest) == pytest.approx(len("Gated speech.") * 0.01 * 24_000 * 2, abs=4)
    assert meter.audio_seconds == pytest.approx(0.13, abs=0.001)


def test_voices_map_to_aura_and_aura_names_are_accepted(openai_client, deepgram):
    for voice in ("alloy", "shimmer", "aura-2-zeus-en"):
        openai_client.audio.speech.create(model="ok/aura-2", voice=voice, input="Hi.").read()
    models = [seen.query["model"] for seen in deepgram.seen("ok")]
    assert models == [["aura-2-thalia-en"], ["aura-2-asteria-en"], ["aura-2-zeus-en"]]
    listing = openai_client.get("/audio/voices?model=ok/aura-2", cast_to=object)
    by_name = {v["name"]: v["voice"] for v in listing["data"]}
    assert by_name["nova"] == "aura-2-luna-en"
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.speech.create(model="ok/aura-2", voice="zebra", input="Hi.")
    assert caught.value.body["param"] == "voice"


def test_a_catalogs_own_voice_map_is_used(openai_client, deepgram):
    openai_client.audio.speech.create(model="ok/aura-own-voices", voice="alloy", input="Hi.").read()
    [seen] = deepgram.seen("ok")
    assert seen.query["model"] == ["aura-asteria-en"]
    with pytest.raises(openai.BadRequestError):  # not in this map
        openai_client.audio.speech.create(model="ok/aura-own-voices", voice="onyx", input="Hi.")


def test_speed_is_deepgrams_within_its_range_and_refused_outside(openai_client, deepgram):
    openai_client.audio.speech.create(
        model="ok/aura-2", voice="alloy", input="A bit faster.", speed=1.25
    ).read()
    assert deepgram.seen("ok")[0].query["speed"] == ["1.25"]
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.speech.create(model="ok/aura-2", voice="alloy", input="Hi.", speed=3)
    assert (caught.value.body["param"], caught.value.body["code"]) == ("speed", "unsupported_value")
    assert len(deepgram.seen("ok")) == 1  # refused here, not sent


def test_input_over_auras_limit_is_cut_at_sentences_and_encoded_once(openai_client, deepgram):
    sentence = "This sentence is one of many in a long text read aloud. "
    text = (sentence * 60).strip()  # about 3,400 characters
    with openai_client.audio.speech.with_streaming_response.create(
        model="ok/aura-2", voice="alloy", input=text, response_format="mp3"
    ) as response:
        audio = b"".join(response.iter_bytes())
    sent = [seen.json()["text"] for seen in deepgram.seen("ok")]
    assert len(sent) == 2
    assert all(len(part) <= 2000 and part.endswith(".") for part in sent)
    assert " ".join(sent) == text
    assert all(seen.query["container"] == ["none"] for seen in deepgram.seen("ok"))
    container, codec, duration = decoded(audio)
    assert (container, codec) == ("mp3", "mp3float")  # one stream, encoded here
    assert duration == pytest.approx(sum(len(part) for part in sent) * 0.01, abs=0.1)
    assert record_of("ok/aura-2").characters == sum(len(part) for part in sent)


def test_speech_parts_never_pass_the_limit_and_lose_nothing():
    text = "Short one. " + "A rather longer sentence, with a clause or two, goes here. " * 80
    parts = speech_parts(text, 2000)
    assert all(len(part) <= 2000 for part in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


# --- errors ---------------------------------------------------------------------------------


def test_a_bad_key_is_the_gateways_problem_502(openai_client, deepgram):
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.audio.transcriptions.create(model="badkey/nova-3", file=("a.wav", WAV))
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_auth_failed"
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.audio.speech.create(model="badkey/aura-2", voice="alloy", input="Hi.")
    assert caught.value.status_code == 502
    assert "dg-not-the-key" not in str(caught.value.body)


def test_deepgrams_400_keeps_its_message(openai_client, deepgram):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(model="ok/nova-9", file=("a.wav", WAV))
    assert caught.value.body["message"] == "No such model/language/tier combination found."
    assert caught.value.body["type"] == "invalid_request_error"
    record = record_of("ok/nova-9")
    assert (record.status_code, float(record.cost)) == (400, 0.0)


def test_deepgrams_category_shaped_400_keeps_its_message_and_details(openai_client, deepgram):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.speech.create(model="ok/aura-own-voices", voice="narrator", input="Hi.")
    assert caught.value.body["message"] == (
        "Failed to resolve a model from the query parameters. (No such model: aura-2-nope-xx1)"
    )


def test_undecodable_audio_is_deepgrams_400(openai_client, deepgram):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model="ok/nova-3", file=("a.wav", b"RIFF not really audio at all", "audio/wav")
        )
    assert "corrupt or unsupported data" in caught.value.body["message"]


def test_a_429_is_retried_and_answered(openai_client, deepgram):
    transcript = openai_client.audio.transcriptions.create(
        model="limited-once/nova-3", file=("a.wav", WAV)
    )
    assert transcript.text == SCRIPT_TEXT
    record = record_of("limited-once/nova-3")
    assert (record.status_code, record.attempts) == (200, 2)


def test_a_persistent_429_is_a_429(openai_client, deepgram):
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.audio.speech.create(model="limited/aura-2", voice="alloy", input="Hi.")
    assert caught.value.body["message"] == "Too many requests. Try again later."
    assert len(deepgram.seen("limited")) == 3  # two retries


def test_a_500_is_retried_and_a_persistent_one_is_502(openai_client, deepgram):
    audio = openai_client.audio.speech.create(
        model="fail-once/aura-2", voice="alloy", input="Hi.", response_format="wav"
    ).read()
    assert audio[:4] == b"RIFF"
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.audio.transcriptions.create(model="fail/nova-3", file=("a.wav", WAV))
    assert (caught.value.status_code, caught.value.body["code"]) == (502, "upstream_error")


def test_an_account_out_of_credits_is_the_gateways_problem_502(openai_client, deepgram):
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.audio.transcriptions.create(model="unpaid/nova-3", file=("a.wav", WAV))
    assert (caught.value.status_code, caught.value.body["code"]) == (
        502,
        "upstream_payment_required",
    )
    assert caught.value.body["type"] == "upstream_error"
    assert len(deepgram.seen("unpaid")) == 1  # not retried: credits do not come back by waiting
    assert record_of("unpaid/nova-3").status_code == 502


async def test_a_stream_cut_mid_speech_is_an_upstream_error(deepgram):
    audio = provider("reset/aura-2").synthesize(SpeechJob("Cut short.", "alloy"), SpeechMeter())
    first = await anext(audio)
    assert first
    with pytest.raises(OpenAIError) as caught:
        async for _ in audio:
            pass
    assert (caught.value.status, caught.value.code) == (502, "upstream_stream_interrupted")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "u"},
         "Invalid credentials."),
        ({"category": "INVALID_JSON", "message": "Invalid JSON submitted.",
          "details": "expected `:` at line 3", "request_id": "u"},
         "Invalid JSON submitted. (expected `:` at line 3)"),
        ({"value": "plain words"}, "plain words"),
        ("a bare string", "a bare string"),
        ([1, 2], ""),
    ],
)  # fmt: skip
def test_error_fields_read_both_of_deepgrams_shapes(body, message):
    assert deepgram_error_fields(body) == (message, None, None)


def test_the_fake_answers_bench_callers_too():
    base_url, stop = start_fake()
    try:
        response = httpx.post(
            f"{base_url}/v1/speak",
            params={"model": "aura-2-thalia-en", "encoding": "mp3"},
            json={"text": "Bench."},
            headers={"authorization": f"Token {API_KEY}"},
        )
        assert (response.status_code, response.headers["content-type"]) == (200, "audio/mpeg")
        assert json.loads(httpx.post(f"{base_url}/v1/listen").content)["err_code"]
    finally:
        stop()
