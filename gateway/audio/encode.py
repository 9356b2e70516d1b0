"""PCM in, OpenAI's speech formats out, one piece at a time.

`StreamEncoder` takes mono PCM (float32 in [-1, 1] or int16) at any sample rate, resamples
it to 24 kHz as OpenAI does for every format, and returns the encoded bytes that are ready
after each piece, so a server can send each sentence the moment it is synthesized.

Formats (what OpenAI sends, byte for byte where it matters):
- mp3   MPEG-1/2 layer III (libmp3lame), audio/mpeg
- opus  Opus in an Ogg container, audio/opus
- aac   AAC-LC in ADTS frames, audio/aac
- flac  native FLAC, audio/flac
- wav   RIFF/WAVE 16-bit PCM, audio/wav
- pcm   raw 16-bit signed little-endian mono samples at 24 kHz, audio/pcm

A streamed file cannot know its length when its header leaves. Our streamed WAV declares
the RIFF and data sizes as 0xFFFFFFFF ("until the end of the stream"), exactly as OpenAI's
streamed WAV does (hexdumps in speaches-ai/speaches#493 and remsky/Kokoro-FastAPI#94: the
same 44-byte header, 24 kHz mono 16-bit); our FLAC's STREAMINFO says 0 total samples, which
the FLAC format defines as "unknown". FFmpeg (PyAV) decodes both to the end with the exact
duration; Python's `wave` reads every frame, though its getnframes() reports the
placeholder (tests/test_audio_encode.py). Strict readers that trust the header need the
length patched in after download.
"""

import contextlib
import io
import struct
from collections.abc import Iterable

import av
import numpy as np

from gateway.providers.base import SpeechFormat

OUTPUT_RATE = 24_000
FORMATS: tuple[SpeechFormat, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# container format, codec, sample format the codec wants, samples per frame it wants
_CODECS: dict[str, tuple[str, str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", "s16p", 1152),
    "opus": ("ogg", "libopus", "s16", 480),  # 20 ms at 24 kHz
    "aac": ("adts", "aac", "fltp", 1024),
    "flac": ("flac", "flac", "s16", None),
}
_BIT_RATES = {"mp3": 64_000, "opus": 48_000, "aac": 64_000}
# Faster settings than the codecs' defaults, measured on 57 s of 24 kHz speech: LAME
# quality 7 (0.28 s instead of 0.50 s), Opus complexity 5 (0.19 s, 0.26 s), AAC's fast
# coder (0.17 s, 0.29 s). At these speech bit rates the difference is not audible, and
# encoding time adds straight onto synthesis time.
_CODEC_OPTIONS = {
    "mp3": {"compression_level": "7"},
    "opus": {"compression_level": "5"},
    "aac": {"aac_coder": "fast"},
}
_UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int = OUTPUT_RATE, channels: int = 1, data_size: int | None = None):
    """A 44-byte canonical WAV header; sizes 0xFFFFFFFF when the length is not yet known."""
    block_align = channels * 2
    data = _UNKNOWN_SIZE if data_size is None else data_size
    riff = _UNKNOWN_SIZE if data_size is None else 36 + data_size
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16
        )
        + b"data"
        + struct.pack("<I", data)
    )


def wav_file(pcm: np.ndarray, sample_rate: int = OUTPUT_RATE) -> bytes:
    """A whole mono 16-bit WAV file of `pcm`, with its exact sizes in the header."""
    data = pcm.astype("<i2").tobytes()
    return wav_header(sample_rate, data_size=len(data)) + data


class _Sink:
    """A write-only file for PyAV: no seek, so muxers write a streamable layout."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self._buffer.write(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        return data


def _as_float(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return np.asarray(pcm, dtype=np.float32)


class StreamEncoder:
    """Encode one clip incrementally: `encode(pcm)` per piece, then `finish()` once."""

    def __init__(self, response_format: SpeechFormat, input_rate: int) -> None:
        if response_format not in CONTENT_TYPES:
            raise ValueError(f"unknown speech format {response_format!r}")
        self.format = response_format
        self.input_rate = input_rate
        self.content_type = CONTENT_TYPES[response_format]
        self.samples_out = 0  # samples at OUTPUT_RATE handed to the encoder so far
        self._started = False
        self._finished = False
        codec = _CODECS.get(response_format)
        sample_format = codec[2] if codec else "s16"
        frame_size = codec[3] if codec else None
        # One resampler per clip: it keeps its filter state across pieces, so sentence
        # boundaries carry no clicks. It also cuts frames to the size the codec requires.
        self._resampler = av.AudioResampler(
            format=sample_format, layout="mono", rate=OUTPUT_RATE, frame_size=frame_size
        )
        self._sink: _Sink | None = None
        self._container = None
        self._stream = None
        if codec:
            self._open_container(*codec[:2])

    def _open_container(self, container_format: str, codec_name: str) -> None:
        self._sink = _Sink()
        options = {}
        if container_format == "ogg":
            # Close an Ogg page every 20 ms instead of every second, so each sentence's
            # audio leaves with it rather than waiting in the muxer for the next one.
            options = {"page_duration": "20000"}
        elif container_format == "mp3":
            # No Xing/LAME frame: on a stream it cannot be rewritten at the end, and a
            # stale one (0 frames) misleads players about the duration. CBR needs none.
            options = {"write_xing": "0"}
        self._container = av.open(self._sink, mode="w", format=container_format, options=options)
        stream = self._container.add_stream(
            codec_name, rate=OUTPUT_RATE, options=_CODEC_OPTIONS.get(self.format, {})
        )
        stream.layout = "mono"
        stream.format = _CODECS[self.format][2]
        if self.format in _BIT_RATES:
            stream.bit_rate = _BIT_RATES[self.format]
        self._stream = stream

    def _frames(self, pcm: np.ndarray | None) -> Iterable[av.AudioFrame]:
        if pcm is None:
            return self._resampler.resample(None)
        samples = _as_float(pcm).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = self.input_rate
        return self._resampler.resample(frame)

    def _encode_frames(self, frames: Iterable[av.AudioFrame]) -> bytes:
        if self._stream is None:
            raw = b"".join(bytes(frame.planes[0])[: frame.samples * 2] for frame in frames)
            self.samples_out += len(raw) // 2
            if self.format == "wav" and not self._started:
                raw = wav_header() + raw
            self._started = True
            return raw
        for frame in frames:
            self.samples_out += frame.samples
            frame.pts = None
            self._container.mux(self._stream.encode(frame))
        self._started = True
        return self._sink.drain()

    def encode(self, pcm: np.ndarray) -> bytes:
        """Encoded bytes made ready by this piece of mono PCM (may be empty)."""
        if self._finished:
            raise RuntimeError("encoder already finished")
        if len(pcm) == 0:
            return b""
        return self._encode_frames(self._frames(pcm))

    def finish(self) -> bytes:
        """Flush resampler, codec and muxer; the last bytes of the clip."""
        if self._finished:
            return b""
        head = b""
        if self.samples_out == 0:
            # Nothing to say (blank or punctuation-only input): still a valid file, with
            # 0.1 s of silence, rather than an empty body no decoder accepts.
            head = self.encode(np.zeros(self.input_rate // 10, dtype=np.float32))
        self._finished = True
        tail = head + self._encode_frames(self._frames(None))
        if self._stream is None:
            return tail
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return tail + self._sink.drain()

    def close(self) -> None:
        """Release codec resources without producing more output (client went away)."""
        if self._container is not None and not self._finished:
            self._finished = True
            with contextlib.suppress(av.FFmpegError, ValueError):
                self._container.close()

    @property
    def seconds_out(self) -> float:
        return self.samples_out / OUTPUT_RATE


def encode_all(pcm: np.ndarray, response_format: SpeechFormat, input_rate: int) -> bytes:
    """A whole clip at once (helpers that need a file, not a stream)."""
    encoder = StreamEncoder(response_format, input_rate)
    return encoder.encode(pcm) + encoder.finish()


def resample_pcm16(pcm: np.ndarray, input_rate: int, output_rate: int = OUTPUT_RATE) -> np.ndarray:
    """Mono PCM at any rate to int16 samples at `output_rate` (24 kHz by default)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=output_rate)
    frame = av.AudioFrame.from_ndarray(_as_float(pcm).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = input_rate
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])
