"""Speech clips made at test time by the project's own code, shared across test modules.

English speech comes from our Piper provider (`local/piper`, the packaged joe voice) and is
encoded with PyAV into each of the nine upload formats OpenAI accepts. The non-English clip
for translation comes from espeak-ng (a Debian package; .ci/run installs it), because the
packaged Piper voice speaks only English. Clips are made once per session and cached.

Use from a test module with `from tests.speech_fixtures import *  # noqa: F403` or import
the fixtures by name.
"""

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.audio.decode import SAMPLE_RATE, decode_audio

PIPER_RATE = 24_000  # PiperProvider.synthesize_pcm's output rate

ENGLISH_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "She sells sea shells by the sea shore every summer morning."
)
SPANISH_TEXT = "Buenos días. Hoy hace muy buen tiempo y vamos a caminar juntos por el parque."
SPANISH_IN_ENGLISH = (
    "Good morning. Today the weather is very good and we are going to walk together in the park."
)

# upload name -> (FFmpeg muxer, codec, sample rate, file extension)
UPLOAD_FORMATS: dict[str, tuple[str, str, int, str]] = {
    "flac": ("flac", "flac", 24_000, "flac"),
    "mp3": ("mp3", "libmp3lame", 24_000, "mp3"),
    "mp4": ("mp4", "aac", 24_000, "mp4"),
    "mpeg": ("mp3", "libmp3lame", 24_000, "mpeg"),  # audio/mpeg: MP3 bytes
    "mpga": ("mp3", "libmp3lame", 24_000, "mpga"),
    "m4a": ("ipod", "aac", 24_000, "m4a"),
    "ogg": ("ogg", "libopus", 48_000, "ogg"),
    "wav": ("wav", "pcm_s16le", 24_000, "wav"),
    "webm": ("webm", "libopus", 48_000, "webm"),
}


@dataclass(frozen=True)
class Clip:
    """An encoded clip: its bytes, a file name for the upload, what it says, how long."""

    name: str
    content: bytes
    text: str
    seconds: float
    language: str = "en"


def encode_pcm(pcm: np.ndarray, rate: int, muxer: str, codec: str, out_rate: int) -> bytes:
    """int16 mono samples at `rate`, encoded with PyAV into one in-memory file."""
    samples = pcm.reshape(1, -1).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = rate
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)
        frames = list(resampler.resample(frame)) + list(resampler.resample(None))
        for piece in frames:
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def synthesize_english(text: str) -> np.ndarray:
    """int16 mono speech at 24 kHz from the project's own TTS provider."""
    from gateway.catalog import catalog
    from gateway.providers import provider_for

    piper = provider_for(catalog().get("local/piper"))
    return piper.synthesize_pcm(text, voice="alloy")


def speak_with_espeak(text: str, voice: str, path: Path) -> bytes:
    if shutil.which("espeak-ng") is None:
        # `make test` installs it; under CI a missing tool must fail, not hide tests.
        missing = pytest.fail if os.environ.get("CI") else pytest.skip
        missing("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return path.read_bytes()


@pytest.fixture(scope="session")
def english_pcm() -> np.ndarray:
    return synthesize_english(ENGLISH_TEXT)


@pytest.fixture(scope="session")
def english_clips(english_pcm) -> dict[str, Clip]:
    """The English sentence in every upload format, keyed by format name."""
    seconds = len(english_pcm) / PIPER_RATE
    clips = {}
    for name, (muxer, codec, out_rate, ext) in UPLOAD_FORMATS.items():
        content = encode_pcm(english_pcm, PIPER_RATE, muxer, codec, out_rate)
        clips[name] = Clip(f"speech.{ext}", content, ENGLISH_TEXT, seconds)
    return clips


@pytest.fixture(scope="session")
def english_wav(english_clips) -> Clip:
    return english_clips["wav"]


@pytest.fixture(scope="session")
def spanish_clip(tmp_path_factory) -> Clip:
    path = tmp_path_factory.mktemp("speech") / "spanish.wav"
    content = speak_with_espeak(SPANISH_TEXT, "es", path)
    samples = decode_audio(content).samples  # 16 kHz float32
    pcm16 = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    # As MP3, like the spec's foreign_audio.mp3.
    mp3 = encode_pcm(pcm16, SAMPLE_RATE, "mp3", "libmp3lame", SAMPLE_RATE)
    seconds = len(samples) / SAMPLE_RATE
    return Clip("foreign_audio.mp3", mp3, SPANISH_TEXT, seconds, language="es")


@pytest.fixture(scope="session")
def silence_wav() -> Clip:
    pcm = np.zeros(3 * 16_000, dtype=np.int16)
    return Clip("silence.wav", encode_pcm(pcm, 16_000, "wav", "pcm_s16le", 16_000), "", 3.0)
