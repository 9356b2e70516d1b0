"""Telephony audio for the realtime socket: G.711 μ-law (`audio/pcmu`, g711_ulaw) and A-law
(`audio/pcma`, g711_alaw), 8 kHz with 8 bits a sample, to and from pcm16 at 24 kHz.

Companding is ITU-T G.711's, bit for bit (the segment tables of its reference code:
μ-law on the 14 high bits of a sample, A-law on the 13 high bits, A-law's even bits
inverted), done once per code into numpy tables: 256 codes to decode, all 65,536 pcm16
values to encode. The rate changes by 3 with `StreamResampler`, which carries its filter
across pieces: cutting a stream anywhere gives the bytes of converting it whole.
"""

import numpy as np

from gateway.audio.resample import StreamResampler
from gateway.providers.base import PCM_RATE

LAWS = ("ulaw", "alaw")
# The realtime API's names for the two formats: GA format types and beta format strings.
FORMAT_LAWS = {"audio/pcmu": "ulaw", "g711_ulaw": "ulaw", "audio/pcma": "alaw", "g711_alaw": "alaw"}
G711_RATE = 8000
_FACTOR = PCM_RATE // G711_RATE

_ULAW_BIAS = 0x84  # 132: shifts magnitudes so segment boundaries fall on powers of two
_ULAW_CLIP = 8159  # largest 14-bit magnitude μ-law codes
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_decoded(codes: np.ndarray) -> np.ndarray:
    inverted = ~codes & 0xFF
    segment = (inverted >> 4) & 0x07
    magnitude = ((((inverted & 0x0F) << 3) + _ULAW_BIAS) << segment) - _ULAW_BIAS
    return np.where(inverted & 0x80, -magnitude, magnitude)


def _ulaw_encoded(pcm: np.ndarray) -> np.ndarray:
    value = pcm >> 2  # 14-bit
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude)  # first end >= magnitude
    step = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | step)  # clipped
    return code ^ mask


def _alaw_decoded(codes: np.ndarray) -> np.ndarray:
    toggled = codes ^ 0x55
    segment = (toggled & 0x70) >> 4
    step = (toggled & 0x0F) << 4
    magnitude = np.where(segment == 0, step + 8, (step + 0x108) << np.maximum(segment - 1, 0))
    return np.where(toggled & 0x80, magnitude, -magnitude)


def _alaw_encoded(pcm: np.ndarray) -> np.ndarray:
    value = pcm >> 3  # 13-bit
    mask = np.where(value >= 0, 0xD5, 0x55)
    magnitude = np.where(value >= 0, value, -value - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)
    step = np.where(segment < 2, magnitude >> 1, magnitude >> np.maximum(segment, 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | step)
    return code ^ mask


_CODES = np.arange(256, dtype=np.int32)
_PCM_VALUES = np.arange(-32768, 32768, dtype=np.int32)
# law -> code -> pcm16, and law -> pcm16 read as uint16 (its two's complement bits) -> code
_DECODE = {
    "ulaw": _ulaw_decoded(_CODES).astype(np.int16),
    "alaw": _alaw_decoded(_CODES).astype(np.int16),
}
_ENCODE = {
    law: np.roll(encoded(_PCM_VALUES).astype(np.uint8), -32768)
    for law, encoded in (("ulaw", _ulaw_encoded), ("alaw", _alaw_encoded))
}


def _checked_law(law: str) -> str:
    if law not in LAWS:
        raise ValueError(f"unknown G.711 law {law!r}: expected one of {LAWS}")
    return law


def expand(codes: bytes, law: str) -> np.ndarray:
    """G.711 codes as int16 samples, at their own 8 kHz."""
    return _DECODE[_checked_law(law)][np.frombuffer(codes, dtype=np.uint8)]


def compress(samples: np.ndarray, law: str) -> bytes:
    """int16 samples as G.711 codes (no rate change)."""
    as_unsigned = samples.astype(np.int16, copy=False).view(np.uint16)
    return _ENCODE[_checked_law(law)][as_unsigned].tobytes()


def _as_pcm16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2")


class G711Decoder:
    """A stream of G.711 bytes in, pcm16 at 24 kHz out, three samples per code.

    The upsampling filter looks half a millisecond ahead: each piece's last few samples
    come out with the next piece, or with `flush` at the end of the stream.
    """

    def __init__(self, law: str) -> None:
        self.law = _checked_law(law)
        self._resampler = StreamResampler(_FACTOR, 1)

    def decode(self, data: bytes) -> bytes:
        samples = expand(data, self.law).astype(np.float32)
        return _as_pcm16(self._resampler.process(samples)).tobytes()

    def flush(self) -> bytes:
        return _as_pcm16(self._resampler.flush()).tobytes()


class G711Encoder:
    """A stream of pcm16 at 24 kHz in (pieces of any even size), G.711 bytes at 8 kHz out.

    The decimating filter holds back about a millisecond of input; `flush` at the end of
    the stream emits it (one code per three samples, the last one rounded up).
    """

    def __init__(self, law: str) -> None:
        self.law = _checked_law(law)
        self._resampler = StreamResampler(1, _FACTOR)

    def encode(self, pcm24k: bytes) -> bytes:
        samples = np.frombuffer(pcm24k, dtype="<i2").astype(np.float32)
        return compress(_as_pcm16(self._resampler.process(samples)), self.law)

    def flush(self) -> bytes:
        return compress(_as_pcm16(self._resampler.flush()), self.law)


def decode_g711(data: bytes, law: str) -> bytes:
    """A whole G.711 clip as pcm16 at 24 kHz."""
    decoder = G711Decoder(law)
    return decoder.decode(data) + decoder.flush()


def encode_g711(pcm24k: bytes, law: str) -> bytes:
    """A whole clip of pcm16 at 24 kHz as G.711 bytes at 8 kHz."""
    encoder = G711Encoder(law)
    return encoder.encode(pcm24k) + encoder.flush()
