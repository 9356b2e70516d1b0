"""PiperProvider with the packaged voice: voices and voice map, the voices folder, pitch and
speed, sentence-by-sentence streaming, and stopping when the listener leaves."""

import asyncio
import shutil

import numpy as np
import pytest

from core.errors import OpenAIError
from gateway.audio.encode import OUTPUT_RATE
from gateway.audio.sentences import split_pieces
from gateway.catalog import catalog
from gateway.providers import piper, provider_for
from gateway.providers.base import SpeechJob, SpeechMeter, Synthesizer

pytestmark = pytest.mark.engines

OPENAI_VOICES = {
    "alloy", "echo", "fable", "onyx", "nova", "shimmer",
    "ash", "ballad", "coral", "sage", "verse", "marin", "cedar",
}  # fmt: skip
THREE_SENTENCES = "The first sentence is short. Here comes the second one. And a third to end."


@pytest.fixture(scope="session")
def provider() -> piper.PiperProvider:
    return provider_for(catalog().get("local/piper"))


def spectral_centroid(samples: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / OUTPUT_RATE)
    return float((power * freqs).sum() / power.sum())


def test_is_a_synthesizer_shared_by_the_aliases(provider):
    assert isinstance(provider, Synthesizer)
    assert provider_for(catalog().get("openai/tts-1")) is provider
    assert provider_for(catalog().get("openai/tts-1-hd")) is provider


def test_every_openai_voice_maps_to_the_packaged_voice(provider):
    voices = provider.voices()
    assert set(voices) >= OPENAI_VOICES
    assert {voices[name] for name in OPENAI_VOICES} == {"en_US-joe-medium"}
    assert voices["en_US-joe-medium"] == "en_US-joe-medium"  # installed voices by name too
    # Distinct settings per name, so one installed voice still gives 13 different voices.
    settings = {tuple(provider.style(name).describe().values()) for name in OPENAI_VOICES}
    assert len(settings) == len(OPENAI_VOICES)


def test_unknown_voice_is_a_400_on_voice(provider):
    with pytest.raises(OpenAIError) as caught:
        provider.style("bob")
    assert (caught.value.status, caught.value.param) == (400, "voice")


def test_voice_loads_once(provider):
    provider.preload()
    assert provider.load("en_US-joe-medium") is provider.load("en_US-joe-medium")
    assert "en_US-joe-medium" in provider._loaded


def test_pcm_is_int16_at_24khz_and_speed_shortens_it(provider):
    text = "Speed changes how long this sentence takes to say."
    normal = provider.synthesize_pcm(text, "alloy", speed=1.0)
    fast = provider.synthesize_pcm(text, "alloy", speed=2.0)
    assert normal.dtype == np.int16
    assert 1.5 < len(normal) / OUTPUT_RATE < 6
    assert 0.42 < len(fast) / len(normal) < 0.58  # stretched: exact up to Piper's noise


def test_pitch_settings_move_the_spectrum(provider):
    """onyx (-3 semitones) sounds lower than alloy (0), nova (+2) higher."""
    text = "Each voice has its own pitch and pace."
    centroids = {v: spectral_centroid(provider.synthesize_pcm(text, v)) for v in ("onyx", "nova")}
    centroids["alloy"] = spectral_centroid(provider.synthesize_pcm(text, "alloy"))
    assert centroids["onyx"] < centroids["alloy"] < centroids["nova"]


def test_voices_folder_pairs_are_discovered_and_usable(provider, settings, tmp_path):
    model, config = piper.packaged_voice_files("en_US-joe-medium")
    shutil.copy(config, tmp_path / "en_GB-dropped-in.onnx.json")
    (tmp_path / "en_GB-dropped-in.onnx").symlink_to(model)
    (tmp_path / "lonely.onnx").symlink_to(model)  # no .onnx.json beside it: ignored
    settings.AROUTER_VOICES_DIR = tmp_path

    voices = provider.voices()
    assert voices["en_GB-dropped-in"] == "en_GB-dropped-in"
    assert "lonely" not in voices
    pcm = provider.synthesize_pcm("A voice from the folder.", "en_GB-dropped-in")
    assert len(pcm) > OUTPUT_RATE // 2


async def test_stream_yields_a_chunk_per_sentence_and_meters_it(provider):
    """Each chunk is one piece, metered as it is yielded: a provider that made the whole
    clip first would yield it as one chunk, or have metered all of it by the first."""
    job = SpeechJob(THREE_SENTENCES, "echo", response_format="pcm")
    meter = SpeechMeter()
    chunks, metered = [], []
    async for chunk in provider.synthesize(job, meter):
        chunks.append(chunk)
        metered.append((meter.characters, meter.audio_seconds))

    ends = [piece.end for piece in split_pieces(THREE_SENTENCES)]
    assert len(chunks) == 3
    assert [characters for characters, _ in metered] == [*ends[:-1], len(THREE_SENTENCES)]
    sent = np.cumsum([len(chunk) for chunk in chunks]) / 2 / OUTPUT_RATE  # int16 mono
    assert [seconds for _, seconds in metered] == pytest.approx(list(sent))


async def test_closing_the_stream_stops_synthesis_and_meters_what_was_made(provider):
    """After the first chunk the meter covers the first piece only, and closing the stream
    leaves it there: what a listener who leaves is billed for."""
    job = SpeechJob(THREE_SENTENCES, "fable", response_format="mp3")
    meter = SpeechMeter()
    stream = provider.synthesize(job, meter)
    first = await anext(stream)
    after_first = (meter.characters, meter.audio_seconds)
    await stream.aclose()
    await asyncio.sleep(0.05)  # a piece a worker was still making is dropped, not metered

    assert first
    assert after_first[0] == split_pieces(THREE_SENTENCES)[0].end
    assert after_first[1] > 0.5
    assert (meter.characters, meter.audio_seconds) == after_first
