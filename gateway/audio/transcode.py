"""Re-encoding uploads for upstreams that refuse their format or size (PyAV, in-process).

Everything is decoded to 16 kHz mono 16-bit PCM, Whisper's own input, so nothing an
upstream's model would hear is lost, and re-encoded as WAV (or FLAC, or MP3 when an
upstream accepts neither).
"""

import io
from pathlib import PurePath

import av
import numpy as np

from core.errors import invalid_param
from gateway.audio.encode import wav_file

RATE = 16_000
BYTES_PER_SECOND = RATE * 2  # 16-bit mono WAV

# PyAV container names that mean a format an upstream's `accepted_formats` may list.
_CONTAINER_FORMATS = {
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "ogg": "ogg",
    "webm": "webm",
    "matroska,webm": "webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
    "aac": "aac",
}
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}


def _opened(source: bytes | str) -> av.container.InputContainer:
    """An audio file's container: `source` is its bytes, or the path of the file."""
    return av.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def format_of(filename: str, source: bytes | str) -> str:
    """The upload's format: its file extension, else what FFmpeg detects."""
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    if suffix:
        return {"mpeg": "mp3", "mpga": "mp3", "oga": "ogg", "opus": "ogg"}.get(suffix, suffix)
    try:
        with _opened(source) as container:
            return _CONTAINER_FORMATS.get(container.format.name, container.format.name)
    except av.FFmpegError:
        return ""


def decode_mono16k(source: bytes | str) -> np.ndarray:
    """Any audio file's first audio stream (its bytes or path) as 16 kHz mono int16 samples."""
    chunks: list[np.ndarray] = []
    try:
        with _opened(source) as container:
            if not container.streams.audio:
                raise invalid_param("The file contains no audio.", param="file")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError:
        raise invalid_param(
            "The audio file could not be decoded or its format is not supported.", param="file"
        ) from None
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def duration_of(source: bytes | str) -> float:
    """Seconds of audio in a file (its bytes or path), by decoding it (headers can lie)."""
    return len(decode_mono16k(source)) / RATE


def _pyav_bytes(samples: np.ndarray, container_format: str, codec: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def encode(samples: np.ndarray, accepted: tuple[str, ...]) -> tuple[bytes, str]:
    """16 kHz mono samples as the best format an upstream accepts: (bytes, format)."""
    if not accepted or "wav" in accepted:
        return wav_file(samples, RATE), "wav"
    if "flac" in accepted:
        return _pyav_bytes(samples, "flac", "flac"), "flac"
    return _pyav_bytes(samples, "mp3", "libmp3lame"), "mp3"
