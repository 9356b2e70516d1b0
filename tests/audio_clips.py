"""Audio whose size says nothing about its length, made with PyAV (no binary fixtures)."""

import io

import av
import numpy as np

RATE = 16_000


def silent_flac(seconds: float) -> bytes:
    """`seconds` of digital silence as FLAC: a few bytes per frame, so minutes fit in
    kilobytes (a size-based guess would take 300 s for about 4 s)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        samples = np.zeros((1, int(seconds * RATE)), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def understated(flac: bytes, seconds: float) -> bytes:
    """The FLAC with its header claiming `seconds` (STREAMINFO's 36-bit total samples),
    while every frame is still there: a container that lies about its duration."""
    assert flac[:4] == b"fLaC"
    assert flac[4] & 0x7F == 0  # STREAMINFO comes first
    at = 8 + 10  # after the block header: 10 bytes of block and frame sizes
    packed = int.from_bytes(flac[at : at + 8], "big")  # rate 20, channels 3, bits 5, total 36
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * RATE)
    return flac[:at] + packed.to_bytes(8, "big") + flac[at + 8 :]
