"""The streaming encoder: every format decodes back (PyAV) at 24 kHz mono with the input's
duration, pieces come out as they go in, and streamed headers are the streamable kind."""

import io
import struct
import wave

import av
import numpy as np
import pytest

from gateway.audio.encode import (
    CONTENT_TYPES,
    FORMATS,
    OUTPUT_RATE,
    StreamEncoder,
    encode_all,
    resample_pcm16,
    wav_header,
)

SOURCE_RATE = 22_050  # Piper's rate: every clip is resampled


def tone(seconds: float, rate: int = SOURCE_RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def decode(data: bytes) -> tuple[str, str, int, int, float, np.ndarray]:
    """(container, codec, decoded rate, channels, seconds, samples) of an encoded clip."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
    samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])
    rate = frames[0].sample_rate
    channels = frames[0].layout.nb_channels
    return (
        container.format.name,
        stream.codec_context.name,
        rate,
        channels,
        len(samples) / rate,
        samples,
    )


# Lossy codecs add priming/padding; the duration may grow by at most this much.
CODEC_SLACK_SECONDS = {"mp3": 0.1, "aac": 0.1, "opus": 0.03, "flac": 0.0, "wav": 0.0}
EXPECTED = {
    "mp3": ("mp3", "mp3float"),
    "opus": ("ogg", "opus"),
    "aac": ("aac", "aac"),
    "flac": ("flac", "flac"),
    "wav": ("wav", "pcm_s16le"),
}


@pytest.mark.parametrize("response_format", [f for f in FORMATS if f != "pcm"])
def test_each_format_decodes_with_its_codec_rate_and_duration(response_format):
    encoder = StreamEncoder(response_format, SOURCE_RATE)
    data = encoder.encode(tone(1.0)) + encoder.encode(tone(0.5)) + encoder.finish()

    container, codec, rate, channels, seconds, _ = decode(data)

    assert (container, codec) == EXPECTED[response_format]
    # Opus always decodes at 48 kHz; its header records the 24 kHz input rate.
    assert rate == (48_000 if response_format == "opus" else OUTPUT_RATE)
    assert channels == 1
    assert 1.5 - 0.01 <= seconds <= 1.5 + CODEC_SLACK_SECONDS[response_format] + 0.01
    assert encoder.seconds_out == pytest.approx(1.5, abs=0.005)


def test_pcm_is_raw_24khz_16bit_little_endian_mono():
    data = encode_all(tone(1.0), "pcm", SOURCE_RATE)

    assert len(data) % 2 == 0
    assert len(data) // 2 == pytest.approx(OUTPUT_RATE, abs=2)
    samples = np.frombuffer(data, dtype="<i2")
    # A 440 Hz tone at half scale survives: peak near 16384, dominant frequency 440 Hz.
    assert 15_000 < np.abs(samples).max() < 17_500
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    assert np.argmax(spectrum) * OUTPUT_RATE / len(samples) == pytest.approx(440, abs=2)


def test_pcm_resampling_keeps_pitch_and_length():
    samples = resample_pcm16(tone(2.0, hz=1000), SOURCE_RATE)
    assert samples.dtype == np.int16
    assert len(samples) == pytest.approx(2 * OUTPUT_RATE, abs=2)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    assert np.argmax(spectrum) * OUTPUT_RATE / len(samples) == pytest.approx(1000, abs=2)


def test_streamed_wav_header_says_unknown_length_and_decoders_read_to_the_end():
    data = encode_all(tone(1.0), "wav", SOURCE_RATE)

    assert data[:4] == b"RIFF"
    assert data[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF
    assert data[36:40] == b"data"
    assert struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    channels, rate, _, _, bits = struct.unpack("<HIIHH", data[22:36])
    assert (channels, rate, bits) == (1, OUTPUT_RATE, 16)
    with wave.open(io.BytesIO(data)) as reader:  # Python's own reader: reads to the end
        frames = reader.readframes(10**9)
    assert len(frames) == len(data) - 44
    assert decode(data)[4] == pytest.approx(1.0, abs=0.001)


def test_wav_header_with_known_size():
    header = wav_header(data_size=48_000)
    assert struct.unpack("<I", header[4:8])[0] == 36 + 48_000
    assert struct.unpack("<I", header[40:44])[0] == 48_000
    assert len(header) == 44


def test_flac_streaminfo_has_24khz_and_decodes_exact_sample_count():
    data = encode_all(tone(1.25), "flac", SOURCE_RATE)
    assert data[:4] == b"fLaC"
    # STREAMINFO: 20-bit rate, 3-bit channels-1, 5-bit bits-1, then 36-bit total samples.
    info = int.from_bytes(data[8 + 10 : 8 + 18], "big")
    assert info >> 44 == OUTPUT_RATE
    assert (info >> 41) & 0x7 == 0
    assert ((info >> 36) & 0x1F) + 1 == 16
    assert info & 0xFFFFFFFFF == 0  # "unknown": the header left before the length was known
    assert decode(data)[4] == pytest.approx(1.25, abs=0.001)


@pytest.mark.parametrize("response_format", FORMATS)
def test_each_piece_is_encoded_when_it_arrives(response_format):
    """A stream, not a buffer: a second of audio in yields most of its bytes out at once."""
    encoder = StreamEncoder(response_format, SOURCE_RATE)
    first = encoder.encode(tone(1.0))
    second = encoder.encode(tone(1.0))
    tail = encoder.finish()
    assert len(first) > 0.6 * len(second)
    assert len(tail) < len(second)
    assert encoder.finish() == b""


def test_int16_input_is_accepted():
    pcm = (tone(0.5) * 32767).astype(np.int16)
    data = encode_all(pcm, "pcm", SOURCE_RATE)
    assert np.abs(np.frombuffer(data, "<i2")).max() > 15_000


def test_content_types_are_openais():
    assert CONTENT_TYPES == {
        "mp3": "audio/mpeg",
        "opus": "audio/opus",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown speech format"):
        StreamEncoder("ogg", SOURCE_RATE)  # type: ignore[arg-type]


@pytest.mark.parametrize("response_format", [f for f in FORMATS if f != "pcm"])
def test_a_clip_with_nothing_in_it_is_still_a_valid_file(response_format):
    """Blank or punctuation-only input: 0.1 s of silence, not an empty body."""
    encoder = StreamEncoder(response_format, SOURCE_RATE)
    data = encoder.encode(np.zeros(0, dtype=np.float32)) + encoder.finish()
    _, _, _, channels, seconds, samples = decode(data)
    assert channels == 1
    assert 0.09 <= seconds <= 0.1 + CODEC_SLACK_SECONDS[response_format] + 0.01
    assert np.abs(samples).max() < 0.01 * (32768 if samples.dtype.kind == "i" else 1)
