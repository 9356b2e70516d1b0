"""G.711 μ-law and A-law for realtime telephony audio (gateway.audio.g711).

Companding is checked on ITU-T G.711's code points and on every one of the 65,536 pcm16
values; the 8 kHz <-> 24 kHz conversion on tones and on real speech, cut into pieces.
"""

import warnings

import numpy as np
import pytest

from gateway.audio.g711 import (
    G711Decoder,
    G711Encoder,
    compress,
    decode_g711,
    encode_g711,
    expand,
)
from gateway.audio.resample import StreamResampler
from tests.speech_fixtures import PIPER_RATE, synthesize_english

EVERY_PCM16 = np.arange(-32768, 32768, dtype=np.int16)


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def _tone(hz: float, seconds: float, rate: int, amplitude: float = 8000) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)


def _snr_db(reference: np.ndarray, signal: np.ndarray) -> float:
    return 10 * np.log10(np.sum(reference**2) / np.sum((signal - reference) ** 2))


@pytest.fixture(scope="module")
def speech() -> bytes:
    return synthesize_english("Thank you for calling. How can I help you today?").tobytes()


# --- companding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("law", "code", "pcm"),
    [
        ("ulaw", 0xFF, 0),
        ("ulaw", 0x7F, 0),  # μ-law's negative zero
        ("ulaw", 0x00, -32124),
        ("ulaw", 0x80, 32124),
        ("ulaw", 0xF0, 120),  # the top of segment 0 ...
        ("ulaw", 0xEF, 132),  # ... and the bottom of segment 1
        ("ulaw", 0xFE, 8),
        ("ulaw", 0x7E, -8),
        ("alaw", 0xD5, 8),
        ("alaw", 0x55, -8),
        ("alaw", 0xAA, 32256),
        ("alaw", 0x2A, -32256),
        ("alaw", 0xD4, 24),
        ("alaw", 0xC5, 264),  # segment 1
    ],
)
def test_codes_decode_to_g711_values(law, code, pcm):
    assert expand(bytes([code]), law)[0] == pcm


@pytest.mark.parametrize(
    ("law", "pcm", "code"),
    [
        ("ulaw", 0, 0xFF),
        ("ulaw", -1, 0x7E),
        ("ulaw", 32767, 0x80),
        ("ulaw", -32768, 0x00),
        ("alaw", 0, 0xD5),
        ("alaw", -1, 0x55),
        ("alaw", 32767, 0xAA),
        ("alaw", -32768, 0x2A),
    ],
)
def test_values_encode_to_g711_codes(law, pcm, code):
    assert compress(np.array([pcm], dtype=np.int16), law) == bytes([code])


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_every_code_survives_a_round_trip(law):
    codes = bytes(range(256))
    again = compress(expand(codes, law), law)
    expected = codes.replace(b"\x7f", b"\xff") if law == "ulaw" else codes  # one zero
    assert again == expected


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decoding_is_monotonic_within_each_sign(law):
    values = expand(bytes(range(256)), law).astype(int)
    positive = values[values > 0]
    assert len(set(values)) == (255 if law == "ulaw" else 256)
    assert np.all(np.diff(np.sort(positive)) > 0)
    assert sorted(-values[values < 0]) == sorted(positive)  # symmetric about zero


def test_companding_error_is_within_g711_bounds():
    """Half a step of the segment the value falls in: under 3.6 % (μ-law) and 3.2 %
    (A-law) above the first segments, a few units below; μ-law clips at ±32124."""
    values = EVERY_PCM16.astype(int)
    for law, floor, fraction in (("ulaw", 36, 0.036), ("alaw", 16, 1 / 32)):
        error = np.abs(expand(compress(EVERY_PCM16, law), law).astype(int) - values)
        unclipped = np.abs(values) <= 32124
        assert np.all(error[unclipped] <= np.maximum(floor, fraction * np.abs(values))[unclipped])
        assert error.max() <= 644


def test_companding_matches_the_reference_implementation():
    """CPython's audioop (the Sun/CCITT reference code; gone after Python 3.12)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = EVERY_PCM16.astype("<i2").tobytes()
    assert compress(EVERY_PCM16, "ulaw") == audioop.lin2ulaw(pcm, 2)
    assert compress(EVERY_PCM16, "alaw") == audioop.lin2alaw(pcm, 2)
    codes = bytes(range(256))
    assert expand(codes, "ulaw").astype("<i2").tobytes() == audioop.ulaw2lin(codes, 2)
    assert expand(codes, "alaw").astype("<i2").tobytes() == audioop.alaw2lin(codes, 2)


def test_an_unknown_law_is_refused():
    with pytest.raises(ValueError, match="ulaw"):
        decode_g711(b"\xff", "mulaw")
    with pytest.raises(ValueError, match="alaw"):
        G711Encoder("g711_alaw")


# --- 8 kHz <-> 24 kHz -------------------------------------------------------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_lengths_are_three_samples_per_code(law):
    assert len(decode_g711(bytes(800), law)) == 800 * 3 * 2
    assert len(encode_g711(bytes(2 * 2400), law)) == 800
    assert len(encode_g711(bytes(2 * 2401), law)) == 801  # the last code rounds up
    assert decode_g711(b"", law) == b""
    assert encode_g711(b"", law) == b""


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_a_tone_keeps_its_level_and_its_place_in_time(law):
    tone = _tone(440, 1.0, PIPER_RATE)
    through = _samples(decode_g711(encode_g711(tone.astype("<i2").tobytes(), law), law))
    middle = slice(1200, -1200)  # away from the start and end of the stream
    assert len(through) == len(tone)
    assert _snr_db(tone[middle], through[middle]) > 30  # no delay: compared sample by sample
    telephone_tone = _tone(1000, 1.0, 8000)
    decoded = _samples(decode_g711(compress(telephone_tone.astype(np.int16), law), law))
    expected = _tone(1000, 1.0, PIPER_RATE)
    assert _snr_db(expected[middle], decoded[middle]) > 30


def test_upsampling_leaves_little_image_above_4khz():
    """A 3 kHz telephone tone at 24 kHz: the images at 5, 11 and 13 kHz are filtered."""
    decoded = _samples(
        decode_g711(compress(_tone(3000, 1.0, 8000).astype(np.int16), "ulaw"), "ulaw")
    )
    spectrum = np.abs(np.fft.rfft(decoded[2400:-2400] * np.hanning(len(decoded) - 4800)))
    frequencies = np.fft.rfftfreq(len(decoded) - 4800, 1 / PIPER_RATE)
    tone = spectrum[np.abs(frequencies - 3000) < 50].max()
    images = spectrum[frequencies > 4500].max()
    assert 20 * np.log10(images / tone) < -40


def _band_limited(pcm24k: bytes) -> np.ndarray:
    """24 kHz -> 8 kHz -> 24 kHz with the module's filters, keeping full precision."""
    down, up = StreamResampler(1, 3), StreamResampler(3, 1)
    samples = _samples(pcm24k).astype(np.float32)
    narrow = np.concatenate([down.process(samples), down.flush()])
    narrow = np.clip(np.rint(narrow), -32768, 32767)
    return np.concatenate([up.process(narrow), up.flush()]).astype(np.float64)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_speech_survives_the_round_trip(speech, law):
    """Companding noise is small next to speech (over 30 dB down): compared with the same
    speech band-limited by the same resampling without companding."""
    through = _samples(decode_g711(encode_g711(speech, law), law))
    reference = _band_limited(speech)
    codes = -(-len(speech) // 2 // 3)  # a code per three samples, the last rounded up
    assert len(through) == len(reference) == 3 * codes
    assert _snr_db(reference, through) > 30


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_pieces_join_without_seams(speech, law):
    """Cut anywhere (one code, odd numbers of samples), the stream is the whole clip's."""
    sizes = np.random.default_rng(3).integers(1, 700, size=1000)

    encoder, encoded, at = G711Encoder(law), b"", 0
    for size in sizes:
        encoded += encoder.encode(speech[at : at + 2 * int(size)])
        at += 2 * int(size)
    assert at >= len(speech)
    encoded += encoder.flush()
    assert encoded == encode_g711(speech, law)

    decoder, decoded, at = G711Decoder(law), b"", 0
    for size in sizes:
        decoded += decoder.decode(encoded[at : at + int(size)])
        at += int(size)
    decoded += decoder.flush()
    assert decoded == decode_g711(encoded, law)


def test_a_flushed_stream_starts_afresh():
    encoder = G711Encoder("ulaw")
    first = encoder.encode(bytes(960)) + encoder.flush()
    assert encoder.encode(bytes(960)) + encoder.flush() == first == encode_g711(bytes(960), "ulaw")
