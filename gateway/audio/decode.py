"""Uploads to Whisper's input: any supported audio file as 16 kHz mono float32 samples.

Decoding happens in-process with PyAV (FFmpeg's libraries, no `ffmpeg` binary). The
container is recognised by probing the bytes, never by the file name, so a WAV named
`clip.mp3` still decodes and a PNG named `clip.wav` is refused. Every way an upload can be
unusable is an OpenAI 400 naming `file`; nothing here raises anything else.
"""

import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import numpy as np
from django.conf import settings

from core.errors import OpenAIError, invalid_param

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what Whisper hears
MIN_SECONDS = 0.1  # OpenAI refuses shorter audio with the same message

# FFmpeg demuxer names for the formats OpenAI lists (flac, mp3, mp4, mpeg, mpga, m4a, ogg,
# wav, webm): mp4 and m4a share one demuxer, webm is Matroska, mpeg/mpga are usually MP3
# bytes (audio/mpeg) and sometimes an MPEG program stream.
SUPPORTED_CONTAINERS: dict[str, str] = {
    "flac": "flac",
    "mp3": "mp3",
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "mpeg": "mpeg",
    "ogg": "ogg",
    "wav": "wav",
    "matroska,webm": "webm",
}
SUPPORTED_NAMES = "flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm"


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32 mono in [-1, 1] at SAMPLE_RATE
    container: str  # the recognised format, one of SUPPORTED_CONTAINERS' values

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _bad_file(message: str) -> OpenAIError:
    return invalid_param(message, param="file", code="invalid_value")


def decode_audio(source: bytes | str) -> DecodedAudio:
    """The first audio stream of an upload (its bytes, or the path of the file holding
    it), downmixed and resampled to 16 kHz mono float32.

    Blocking (FFmpeg work): call it off the event loop.
    """
    with _opened(source) as container:
        name = container.format.name
        chunks = list(_decode_stream(container))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    _check_long_enough(len(samples))
    return DecodedAudio(
        samples=samples.astype(np.float32) / 32768.0, container=SUPPORTED_CONTAINERS[name]
    )


def decoded_seconds(source: bytes | str) -> float:
    """How long an upload lasts once decoded, counted exactly as `decode_audio` counts it
    (same checks, same AROUTER_MAX_AUDIO_SECONDS limit) without keeping the samples.

    This is the duration a transcription is billed for, known before an engine runs: a
    container's header may claim less than it holds. Blocking: call it off the event loop.
    """
    with _opened(source) as container:
        count = sum(len(chunk) for chunk in _decode_stream(container))
    _check_long_enough(count)
    return count / SAMPLE_RATE


def declared_seconds(source: bytes | str) -> float | None:
    """How long the container says its audio is, read from its header without decoding
    (FFmpeg may estimate it from the bitrate); None when it says nothing usable or the
    file cannot be opened. Cheap, but only a claim: `decoded_seconds` is the truth.
    """
    try:
        with av.open(_readable(source), mode="r") as container:
            if container.duration and container.duration > 0:
                return container.duration / av.time_base
            for stream in container.streams.audio[:1]:
                if stream.duration and stream.time_base:
                    return float(stream.duration * stream.time_base)
    except (av.FFmpegError, ValueError, OSError):
        pass
    return None


def _readable(source: bytes | str):
    return source if isinstance(source, str) else io.BytesIO(source)


@contextmanager
def _opened(source: bytes | str) -> Iterator[av.container.InputContainer]:
    """The upload opened as a supported container with an audio stream, or the 400."""
    if (os.path.getsize(source) if isinstance(source, str) else len(source)) == 0:
        raise _bad_file("The audio file is empty.")
    try:
        container = av.open(_readable(source), mode="r")
    except (av.FFmpegError, ValueError, OSError):
        raise _bad_file(
            "The file could not be read as audio: it is corrupt or not an audio file. "
            f"Supported formats: {SUPPORTED_NAMES}."
        ) from None
    with container:
        name = container.format.name
        if name not in SUPPORTED_CONTAINERS:
            raise _bad_file(
                f"Unsupported file format ({container.format.long_name or name}). "
                f"Supported formats: {SUPPORTED_NAMES}."
            )
        if not container.streams.audio:
            raise _bad_file("The file contains no audio stream.")
        yield container


def _check_long_enough(sample_count: int) -> None:
    if sample_count < MIN_SECONDS * SAMPLE_RATE:
        raise invalid_param(
            f"Audio file is too short. Minimum audio length is {MIN_SECONDS} seconds.",
            param="file",
            code="audio_too_short",
        )


def _too_long(limit: float) -> OpenAIError:
    return invalid_param(
        f"The audio is longer than the {limit:g} seconds this server accepts.",
        param="file",
        code="audio_too_long",
    )


def _decode_stream(container: av.container.InputContainer) -> Iterator[np.ndarray]:
    """The first audio stream as 16 kHz mono int16 chunks, stopping at the length limit."""
    # Through 16-bit samples, exactly as faster-whisper's own decode_audio does, so the
    # gateway hears bit for bit what bare faster-whisper hears (same text, same timings).
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    # Counted while decoding: a small file can claim hours (silence compresses to nearly
    # nothing), and decoding stops at the limit instead of filling memory.
    limit = settings.AROUTER_MAX_AUDIO_SECONDS
    budget = int(limit * SAMPLE_RATE)
    produced = 0
    try:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                produced += 1
                budget -= len(chunk)
                yield chunk
            if budget < 0:
                raise _too_long(limit)
    except (av.FFmpegError, ValueError) as exc:
        # A file cut short decodes up to the damage, as FFmpeg itself would; one that
        # yields nothing at all is corrupt.
        if not produced:
            raise _bad_file(
                "The audio file is corrupt: no audio could be decoded from it."
            ) from None
        logger.info("audio upload damaged after %d chunks: %s", produced, exc)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)
