"""The input audio buffer: what input_audio_buffer.append adds, and commit takes whole.

Audio arrives as base64 pcm16 (16-bit mono little-endian at 24 kHz) in pieces of any size;
the buffer holds it until the client commits it as a user turn or clears it.
"""

import base64
import binascii

import numpy as np

from gateway.audio.encode import wav_file
from gateway.providers.base import PCM_RATE
from gateway.realtime.protocol import RealtimeError

MAX_BUFFER_BYTES = 24 * 1024 * 1024  # about 8 minutes of 24 kHz pcm16
MIN_COMMIT_BYTES = PCM_RATE // 10 * 2  # OpenAI refuses to commit less than 100 ms


def _decoded(audio) -> bytes:
    if not isinstance(audio, str):
        raise RealtimeError("`audio` must be a base64 string.", "invalid_type", "audio")
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise RealtimeError("`audio` is not valid base64.", "invalid_value", "audio") from None
    if len(pcm) % 2:
        raise RealtimeError(
            "pcm16 audio must be a whole number of 16-bit samples.", "invalid_value", "audio"
        )
    return pcm


def as_wav(pcm: bytes) -> bytes:
    """A committed buffer as the WAV file the transcriber reads."""
    return wav_file(np.frombuffer(pcm, dtype="<i2"), PCM_RATE)


class AudioBuffer:
    def __init__(self) -> None:
        self._pcm = bytearray()

    @property
    def seconds(self) -> float:
        return len(self._pcm) / 2 / PCM_RATE

    def append(self, audio) -> None:
        """Add an append event's `audio`; a bad or overflowing piece is refused whole."""
        pcm = _decoded(audio)
        if len(self._pcm) + len(pcm) > MAX_BUFFER_BYTES:
            raise RealtimeError(
                "The input audio buffer is full; commit or clear it.",
                "input_audio_buffer_full",
                "audio",
            )
        self._pcm += pcm

    def check_committable(self) -> None:
        if len(self._pcm) < MIN_COMMIT_BYTES:
            raise RealtimeError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {self.seconds * 1000:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )

    def take(self) -> bytes:
        """The buffered audio, leaving the buffer empty."""
        pcm, self._pcm = bytes(self._pcm), bytearray()
        return pcm

    def clear(self) -> None:
        self._pcm = bytearray()
