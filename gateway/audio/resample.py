"""Streaming resampling of mono audio by a small rational factor, in numpy.

The realtime socket changes rates in pieces of any size as they arrive: 24 kHz to the
16 kHz Silero listens at, and 8 kHz telephony to and from 24 kHz. `StreamResampler`
keeps the samples that straddle a piece's end, so cutting the input anywhere gives
exactly the output of resampling it whole.

The filter is a Kaiser-windowed sinc low-pass at 90 % of the lower Nyquist rate,
evaluated at each output instant (a polyphase filter with one row per phase). Output
sample n stands for input time n * down / up: there is no delay on the timeline, only
a lookahead of a few input samples (`flush` emits them at the end of a stream).
"""

import math

import numpy as np

_ZERO_CROSSINGS = 8  # of the sinc on each side: about 60 dB of stopband with Kaiser 8
_KAISER_BETA = 8.0
_ROLLOFF = 0.9


class StreamResampler:
    """float32 samples at rate r in, float32 samples at rate r * up / down out."""

    def __init__(self, up: int, down: int) -> None:
        divisor = math.gcd(up, down)
        self._up, self._down = up // divisor, down // divisor
        cutoff = 0.5 * _ROLLOFF * min(1.0, self._up / self._down)  # cycles per input sample
        self._half_width = math.ceil(_ZERO_CROSSINGS / (2 * cutoff))  # in input samples
        self._offsets = np.arange(1 - self._half_width, self._half_width + 1)
        self._phases = self._phase_filters(cutoff)
        self._start()

    def _start(self) -> None:
        # The stream starts with silence before input 0, so output 0 has its left half.
        self._pending = np.zeros(self._half_width - 1, dtype=np.float32)
        self._pending_start = 1 - self._half_width  # input index of _pending[0]
        self._consumed = 0  # input samples received
        self._produced = 0  # output samples emitted

    def _phase_filters(self, cutoff: float) -> np.ndarray:
        """Row r: the taps for an output falling r/up of the way past an input sample."""
        fractions = np.arange(self._up)[:, None] / self._up
        distance = fractions - self._offsets[None, :]  # output instant minus input instant
        span = np.clip(1 - (distance / self._half_width) ** 2, 0, None)
        window = np.i0(_KAISER_BETA * np.sqrt(span)) / np.i0(_KAISER_BETA)
        taps = 2 * cutoff * np.sinc(2 * cutoff * distance) * window
        return (taps / taps.sum(axis=1, keepdims=True)).astype(np.float32)  # unity gain at DC

    def process(self, samples: np.ndarray) -> np.ndarray:
        """The output samples that `samples` (and what came before) make available."""
        self._consumed += samples.size
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        last_input = self._pending_start + self._pending.size - 1
        return self._emit(self._outputs_until(last_input - self._half_width))

    def flush(self) -> np.ndarray:
        """The last outputs, up to the instant of the last input sample, then a fresh start."""
        needed = math.ceil(self._consumed * self._up / self._down)
        self._pending = np.concatenate(
            [self._pending, np.zeros(self._half_width, dtype=np.float32)]
        )
        out = self._emit(needed)
        self._start()
        return out

    def _outputs_until(self, center_limit: int) -> int:
        """How many outputs in all have their center input sample at or before the limit."""
        if center_limit < 0:
            return 0
        return ((center_limit + 1) * self._up - 1) // self._down + 1

    def _emit(self, total: int) -> np.ndarray:
        count = total - self._produced
        if count <= 0:
            return np.zeros(0, dtype=np.float32)
        out = np.empty(count, dtype=np.float32)
        taps, stride = self._offsets.size, self._pending.strides[0]
        windows = np.lib.stride_tricks.as_strided(  # row i: the taps' inputs from sample i
            self._pending, (self._pending.size - taps + 1, taps), (stride, stride), writeable=False
        )
        # Outputs `up` apart share a phase and have centers `down` inputs apart: one strided
        # view of the input and one matrix product per phase.
        for first in range(min(self._up, count)):
            center, phase = divmod((self._produced + first) * self._down, self._up)
            row = center + self._offsets[0] - self._pending_start
            rows = windows[row :: self._down][: len(range(first, count, self._up))]
            out[first :: self._up] = rows @ self._phases[phase]
        self._produced = total
        self._drop_before(total * self._down // self._up + self._offsets[0])
        return out

    def _drop_before(self, first_needed: int) -> None:
        drop = min(max(first_needed - self._pending_start, 0), self._pending.size)
        self._pending = self._pending[drop:]
        self._pending_start += drop
