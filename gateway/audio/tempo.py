"""Change the tempo of speech without changing its pitch (FFmpeg's `atempo`, via PyAV).

OpenAI's `speed` scales a clip's duration exactly (speed 2.0 = half as long). Piper's own
`length_scale` cannot: phonemes have a minimum length and pauses barely move, so speed 4
only shortens a sentence by half. Stretching the synthesized audio is exact at every
speed from 0.25 to 4.0.
"""

import av
import numpy as np
from av.filter import Graph

ATEMPO_MIN, ATEMPO_MAX = 0.5, 100.0  # one atempo filter's range; chain them beyond it


def _factors(tempo: float) -> list[float]:
    factors = []
    while tempo < ATEMPO_MIN:
        factors.append(ATEMPO_MIN)
        tempo /= ATEMPO_MIN
    factors.append(tempo)
    return factors


def change_tempo(samples: np.ndarray, rate: int, tempo: float) -> np.ndarray:
    """Float32 mono `samples` played `tempo` times as fast, same pitch, same rate.

    Each call is a whole piece (a sentence, which begins and ends near silence), flushed
    at its end, so a streaming caller gets every sample of the piece at once.
    """
    if tempo == 1.0 or len(samples) == 0:
        return samples
    graph = Graph()
    source = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=f"1/{rate}")
    last = source
    for factor in _factors(tempo):
        node = graph.add("atempo", f"{factor}")
        last.link_to(node)
        last = node
    sink = graph.add("abuffersink")
    last.link_to(sink)
    graph.configure()

    frame = av.AudioFrame.from_ndarray(
        np.asarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    frame.pts = 0
    graph.push(frame)
    graph.push(None)  # end of stream: atempo hands over what it still holds
    out = []
    while True:
        try:
            out.append(graph.pull().to_ndarray().reshape(-1))
        except (av.BlockingIOError, av.EOFError):
            break
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
