"""The input audio buffer: what input_audio_buffer.append adds, and a commit takes.

Audio arrives base64-encoded in the session's input format (pcm16 at 24 kHz, or G.711
μ-law / A-law at 8 kHz for telephony) in pieces of any size, and is kept as pcm16 at
24 kHz. The buffer also keeps the session's audio clock: how much audio was ever appended,
which is what `audio_start_ms` / `audio_end_ms` count from.
"""

import binascii

import numpy as np
import pybase64

from gateway.audio.encode import wav_file
from gateway.audio.g711 import G711Decoder
from gateway.providers.base import PCM_RATE
from gateway.realtime.protocol import RealtimeError

MAX_BUFFER_BYTES = 24 * 1024 * 1024  # about 8 minutes of 24 kHz pcm16
MIN_COMMIT_BYTES = PCM_RATE // 10 * 2  # OpenAI refuses to commit less than 100 ms
BYTES_PER_MS = PCM_RATE * 2 // 1000


def _base64(audio, param: str) -> bytes:
    if not isinstance(audio, str):
        raise RealtimeError(f"`{param}` must be a base64 string.", "invalid_type", param)
    try:
        return pybase64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise RealtimeError(f"`{param}` is not valid base64.", "invalid_value", param) from None


def decoded_pcm(audio, param: str = "audio") -> bytes:
    """Base64 pcm16 (24 kHz mono little-endian) as bytes, refused if not whole samples."""
    pcm = _base64(audio, param)
    if len(pcm) % 2:
        raise RealtimeError(
            "pcm16 audio must be a whole number of 16-bit samples.", "invalid_value", param
        )
    return pcm


def as_wav(pcm: bytes) -> bytes:
    """Buffered audio as the WAV file a transcriber reads."""
    return wav_file(np.frombuffer(pcm, dtype="<i2"), PCM_RATE)


def ms_of(pcm_bytes: int) -> int:
    return pcm_bytes // BYTES_PER_MS


class InputAudio:
    """Reads append events in the session's input format ("pcm16", "g711_ulaw",
    "g711_alaw"); G.711 is decoded with its resampler state kept across appends."""

    def __init__(self, audio_format: str = "pcm16") -> None:
        self.format = audio_format
        law = {"g711_ulaw": "ulaw", "g711_alaw": "alaw"}.get(audio_format)
        self._g711 = G711Decoder(law) if law else None

    def pcm(self, audio) -> bytes:
        if self._g711 is None:
            return decoded_pcm(audio)
        return self._g711.decode(_base64(audio, "audio"))


class AudioBuffer:
    def __init__(self) -> None:
        self._pcm = bytearray()
        self._start = 0  # where the buffer starts on the session's audio clock (bytes)

    @property
    def seconds(self) -> float:
        return len(self._pcm) / 2 / PCM_RATE

    @property
    def start_ms(self) -> int:
        return ms_of(self._start)

    @property
    def end_ms(self) -> int:
        """The session's audio clock: all audio ever appended, in ms."""
        return ms_of(self._start + len(self._pcm))

    def append(self, pcm: bytes) -> None:
        """Add decoded pcm16; a piece that would overflow the buffer is refused whole."""
        if len(self._pcm) + len(pcm) > MAX_BUFFER_BYTES:
            raise RealtimeError(
                "The input audio buffer is full; commit or clear it.",
                "input_audio_buffer_full",
                "audio",
            )
        self._pcm += pcm

    def audio_between(self, start_ms: int, end_ms: int) -> bytes:
        """The buffered audio from `start_ms` to `end_ms` of the session's clock."""
        first = max(0, start_ms * BYTES_PER_MS - self._start)
        last = max(first, end_ms * BYTES_PER_MS - self._start)
        return bytes(self._pcm[first:last])

    def keep_from(self, start_ms: int) -> None:
        """Drop what was appended before `start_ms` (silence before a turn, past its padding)."""
        drop = min(len(self._pcm), max(0, start_ms * BYTES_PER_MS - self._start))
        del self._pcm[:drop]
        self._start += drop

    def check_committable(self) -> None:
        if len(self._pcm) < MIN_COMMIT_BYTES:
            raise RealtimeError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {self.seconds * 1000:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )

    def take(self, until_ms: int | None = None) -> bytes:
        """The buffered audio (up to `until_ms` of the clock), leaving the rest buffered."""
        end = len(self._pcm) if until_ms is None else until_ms * BYTES_PER_MS - self._start
        end = max(0, min(len(self._pcm), end))
        pcm = bytes(self._pcm[:end])
        del self._pcm[:end]
        self._start += end
        return pcm

    def clear(self) -> None:
        self._start += len(self._pcm)
        self._pcm = bytearray()
