"""Tones for tests that need audio but not speech: a vendor fake only counts its length."""

import numpy as np

from gateway.audio.encode import wav_file


def tone_wav(seconds: float, rate: int = 16_000, hz: float = 440) -> bytes:
    """`seconds` of a steady tone as a mono 16-bit WAV file."""
    t = np.arange(int(seconds * rate)) / rate
    return wav_file((0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16), rate)
