"""WhisperProvider on the real packaged weights: assembly, sharing, accuracy, streaming,
English-only refusals, idle unload."""

import asyncio
import itertools
import re

import pytest

from core.errors import OpenAIError
from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.base import AudioUpload, Segment, Transcriber, Transcript, TranscriptionJob
from gateway.providers.whisper import (
    WHISPER_BASE_SIZE,
    WhisperProvider,
    assemble_whisper_base,
)
from gateway.providers.whisper_live import repeats_itself
from tests.chat_speech import heard_error_rate
from tests.speech_fixtures import *  # noqa: F403
from tests.speech_fixtures import Clip

pytestmark = pytest.mark.engines

# Error allowed on clean synthetic speech, by characters with the word breaks removed:
# Whisper writes "sea shells by the sea shore" as "seashells by the seashore" (4 word errors
# in 20, no character error), and tiny.en sometimes drops the last two words (0.15).
MAX_ERROR = 0.2


def job(clip: Clip, **kwargs) -> TranscriptionJob:
    return TranscriptionJob(upload=AudioUpload(clip.content, clip.name), **kwargs)


@pytest.fixture(scope="module")
def base() -> WhisperProvider:
    return provider_for(catalog().get("local/whisper-base"))


@pytest.fixture(scope="module")
def tiny() -> WhisperProvider:
    return provider_for(catalog().get("local/whisper-tiny.en"))


def test_packaged_base_weights_are_assembled_once_and_verified(tmp_path):
    folder = assemble_whisper_base(tmp_path)
    model = folder / "model.bin"
    assert model.stat().st_size == WHISPER_BASE_SIZE
    assert {p.name for p in folder.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    written = model.stat().st_mtime_ns
    assert assemble_whisper_base(tmp_path) == folder
    assert model.stat().st_mtime_ns == written  # not rebuilt


def test_aliases_share_one_provider_and_one_model_copy(base):
    assert isinstance(base, Transcriber)
    for alias in ("openai/whisper-large-v3", "openai/whisper-large-v3-turbo"):
        assert provider_for(catalog().get(alias)) is base
    first = base.load()
    assert base.load() is first
    assert base.loads == 1


async def test_transcribes_english_speech(base, english_wav):
    transcript = await base.transcribe(job(english_wav))
    assert heard_error_rate(english_wav.text, transcript.text) <= MAX_ERROR, transcript.text
    assert transcript.language == "english"
    assert transcript.duration == pytest.approx(english_wav.seconds, abs=0.05)
    assert transcript.words is None
    assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))
    assert transcript.text == "".join(s.text for s in transcript.segments).strip()


async def test_word_timestamps_are_monotonic_and_inside_the_audio(base, english_wav):
    transcript = await base.transcribe(job(english_wav, word_timestamps=True))
    words = transcript.words
    assert words
    assert len(words) >= 15
    assert heard_error_rate(english_wav.text, " ".join(w.word for w in words)) <= MAX_ERROR
    assert all(w.word == w.word.strip() and w.word for w in words)
    for previous, word in itertools.pairwise(words):
        assert previous.start <= word.start
        assert previous.end <= word.end
    assert all(0 <= w.start <= w.end <= transcript.duration + 0.01 for w in words)
    assert words == [w for s in transcript.segments for w in s.words]


async def test_silence_is_an_empty_transcript(base, silence_wav):
    transcript = await base.transcribe(job(silence_wav))
    assert transcript.text == ""
    assert transcript.segments == []
    assert transcript.duration == pytest.approx(3.0)


# --- live pieces (a realtime turn): heard at their own length -------------------------------


async def test_a_live_piece_is_heard_as_the_whole_window_hears_it(base, english_wav):
    live = await base.transcribe(job(english_wav, live=True))
    assert heard_error_rate(english_wav.text, live.text) <= MAX_ERROR, live.text
    assert live.language == "english"
    assert live.duration == pytest.approx(english_wav.seconds, abs=0.05)


async def test_a_live_piece_finds_its_language(base, spanish_clip):
    live = await base.transcribe(job(spanish_clip, live=True))
    assert live.language == "spanish"
    assert heard_error_rate(spanish_clip.text, live.text) <= 0.35, live.text


async def test_a_silent_live_piece_is_heard_as_nothing(base, silence_wav):
    assert (await base.transcribe(job(silence_wav, live=True))).text == ""


def test_a_looping_decode_is_told_from_speech():
    once = "Why is the sky blue?"
    assert not repeats_itself(once, 6, 1.5)
    assert repeats_itself(" ".join([once] * 8), 48, 1.5)  # compresses too well
    assert repeats_itself(f"{once} {once}", 40, 1.5)  # 40 tokens in 1.5 s: nobody speaks so
    long_speech = "The quick brown fox jumps over the lazy dog near the river bank today."
    assert not repeats_itself(long_speech, 17, 4.0)
    # The piece written twice: too short to compress well, few enough tokens for its time.
    question = "How tall is the Eiffel Tower?"
    assert repeats_itself(f"{question} {question}", 16, 2.0)
    assert repeats_itself(f"Hello. {question} {question}", 18, 2.5)
    assert not repeats_itself("Thank you, thank you.", 6, 1.5)  # short: it may be spoken
    assert not repeats_itself("I said yes, I said.", 7, 1.5)  # a phrase again, not in a row


async def test_stream_yields_segments_then_the_transcript(base, english_wav):
    items = [item async for item in base.stream_transcription(job(english_wav))]
    *segments, transcript = items
    assert segments
    assert all(isinstance(s, Segment) for s in segments)
    assert isinstance(transcript, Transcript)
    assert transcript.segments == segments
    assert heard_error_rate(english_wav.text, transcript.text) <= MAX_ERROR


async def test_stream_surfaces_decode_errors_before_any_segment(base):
    bad = TranscriptionJob(upload=AudioUpload(b"not audio at all" * 10, "x.mp3"))
    with pytest.raises(OpenAIError) as caught:
        async for _ in base.stream_transcription(bad):
            pass
    assert (caught.value.status, caught.value.param) == (400, "file")


async def test_forced_language_is_used(base, english_wav):
    transcript = await base.transcribe(job(english_wav, language="en-US"))
    assert transcript.language == "english"


async def test_unknown_language_is_refused(base, english_wav):
    with pytest.raises(OpenAIError) as caught:
        await base.transcribe(job(english_wav, language="klingon"))
    assert (caught.value.status, caught.value.param) == (400, "language")


async def test_english_only_model_transcribes_english(tiny, english_wav):
    transcript = await tiny.transcribe(job(english_wav))
    assert heard_error_rate(english_wav.text, transcript.text) <= MAX_ERROR, transcript.text
    assert transcript.language == "english"


async def test_english_only_model_refuses_translation_and_other_languages(tiny, english_wav):
    with pytest.raises(OpenAIError) as caught:
        await tiny.transcribe(job(english_wav, task="translate"))
    assert (caught.value.status, caught.value.param) == (400, "model")
    assert "English-only" in caught.value.message
    with pytest.raises(OpenAIError) as caught:
        await tiny.transcribe(job(english_wav, language="de"))
    assert (caught.value.status, caught.value.param) == (400, "language")


async def test_translation_of_spanish_speech_is_english(base, spanish_clip):
    heard = await base.transcribe(job(spanish_clip))
    assert heard.language == "spanish"
    translated = await base.transcribe(job(spanish_clip, task="translate"))
    assert translated.language == "english"
    words = set(re.findall(r"[a-z]+", translated.text.lower()))
    assert {"today", "walk", "park"} <= words, translated.text
    assert not {"buenos", "parque", "hoy"} & words


async def test_model_is_unloaded_after_the_idle_ttl_and_reloads(settings, english_wav):
    settings.AROUTER_MODEL_IDLE_TTL = 0.3
    provider = WhisperProvider(catalog().get("local/whisper-tiny.en"))
    await provider.transcribe(job(english_wav))
    assert provider.loaded
    assert provider.loads == 1
    for _ in range(100):
        if not provider.loaded:
            break
        await asyncio.sleep(0.05)
    assert not provider.loaded
    transcript = await provider.transcribe(job(english_wav))
    assert provider.loads == 2
    assert transcript.text


async def test_concurrent_requests_share_the_loaded_model(base, english_wav, settings):
    results = await asyncio.gather(*(base.transcribe(job(english_wav)) for _ in range(3)))
    assert len({r.text for r in results}) == 1
    assert base.loads == 1
    assert base._executor._max_workers == settings.AROUTER_ENGINE_CONCURRENCY


def test_preload_loads_the_named_models_in_the_background(settings):
    from django.core.exceptions import ImproperlyConfigured

    from gateway.providers import forget_providers
    from gateway.providers.preload import start_preload

    forget_providers()  # a fresh instance, so loading is observable
    settings.AROUTER_PRELOAD = ["local/whisper-tiny.en"]
    thread = start_preload()
    thread.join(timeout=120)
    provider = provider_for(catalog().get("local/whisper-tiny.en"))
    assert provider.loaded
    assert provider.loads == 1
    settings.AROUTER_PRELOAD = ["nobody/nothing"]
    with pytest.raises(ImproperlyConfigured):
        start_preload()
    settings.AROUTER_PRELOAD = []
    assert start_preload() is None


# --- include[]=logprobs, chunking_strategy, diarization -------------------------------------


async def test_logprobs_are_each_text_token_as_decoded(base, english_wav):
    transcript = await base.transcribe(job(english_wav, include_logprobs=True))
    assert heard_error_rate(english_wav.text, transcript.text) <= MAX_ERROR, transcript.text
    logprobs = transcript.logprobs
    # Text tokens only (no timestamps, no end of text): together they spell the transcript.
    assert "".join(p.token for p in logprobs).strip() == transcript.text
    assert all(bytes(p.bytes).decode() == p.token for p in logprobs)  # plain English
    assert all(p.logprob <= 0 for p in logprobs)
    # Greedy decoding of clean speech writes tokens the model was sure of, nearly all.
    assert sum(p.logprob for p in logprobs) / len(logprobs) > -0.5
    assert sum(p.logprob > -1.0 for p in logprobs) >= 0.9 * len(logprobs)
    # Each segment holds its own tokens' log-probabilities (a stream sends them per delta).
    for segment in transcript.segments:
        assert "".join(p.token for p in segment.logprobs) == segment.text
    assert logprobs == [p for s in transcript.segments for p in s.logprobs]


async def test_logprobs_only_when_asked_and_with_every_streamed_segment(base, english_wav):
    plain = await base.transcribe(job(english_wav))
    assert plain.logprobs is None
    assert all(s.logprobs is None for s in plain.segments)
    *segments, transcript = [
        item async for item in base.stream_transcription(job(english_wav, include_logprobs=True))
    ]
    assert all(s.logprobs for s in segments)
    assert transcript.logprobs == [p for s in segments for p in s.logprobs]


async def test_server_vad_settings_cut_the_audio(base, english_wav):
    from gateway.providers.base import ServerVad

    for strategy in ("auto", ServerVad(), ServerVad(300, 500, 0.3)):
        transcript = await base.transcribe(job(english_wav, chunking_strategy=strategy))
        assert heard_error_rate(english_wav.text, transcript.text) <= MAX_ERROR, strategy
    # A threshold no speech reaches: the VAD keeps nothing, so nothing is heard.
    deaf = await base.transcribe(job(english_wav, chunking_strategy=ServerVad(threshold=1.0)))
    assert deaf.text == ""


async def test_diarization_is_refused_not_faked(base, english_wav):
    with pytest.raises(OpenAIError) as caught:
        await base.transcribe(job(english_wav, diarize=True))
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "response_format", "unsupported_value")
    assert "'diarized_json' is not compatible with model 'local/whisper-base'" in error.message
    with pytest.raises(OpenAIError):
        async for _ in base.stream_transcription(job(english_wav, diarize=True)):
            pass
