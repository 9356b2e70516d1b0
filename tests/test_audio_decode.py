"""gateway.audio.decode: every upload format to 16 kHz mono float32, refusals as OpenAI 400s."""

import io

import av
import numpy as np
import pytest

from core.errors import OpenAIError
from gateway.audio.decode import SAMPLE_RATE, decode_audio
from tests.speech_fixtures import UPLOAD_FORMATS, encode_pcm

RATE = 24_000
SECONDS = 1.5
EXPECTED_CONTAINER = {
    "flac": "flac",
    "mp3": "mp3",
    "mpeg": "mp3",
    "mpga": "mp3",
    "mp4": "mp4",
    "m4a": "mp4",
    "ogg": "ogg",
    "wav": "wav",
    "webm": "webm",
}


@pytest.fixture(scope="module")
def tone() -> np.ndarray:
    """440 Hz at half scale, int16 mono at 24 kHz."""
    t = np.arange(int(RATE * SECONDS)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 16_000).astype(np.int16)


def _refusal(content: bytes) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        decode_audio(content)
    return caught.value


@pytest.mark.parametrize("name", sorted(UPLOAD_FORMATS))
def test_every_upload_format_decodes_to_16k_mono(tone, name):
    muxer, codec, out_rate, _ = UPLOAD_FORMATS[name]
    audio = decode_audio(encode_pcm(tone, RATE, muxer, codec, out_rate))
    assert audio.container == EXPECTED_CONTAINER[name]
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    # Lossy codecs add priming/padding samples, never more than a few frames' worth.
    assert audio.duration == pytest.approx(SECONDS, abs=0.1)
    # Still a 440 Hz tone at about half scale after the codec and the resampler.
    spectrum = np.abs(np.fft.rfft(audio.samples))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(audio.samples)
    assert peak_hz == pytest.approx(440, abs=5)
    assert 0.3 < np.max(np.abs(audio.samples)) < 0.7


def test_stereo_48k_is_downmixed_and_resampled():
    t = np.arange(48_000) / 48_000
    left = np.sin(2 * np.pi * 300 * t) * 10_000
    stereo = np.stack([left, left]).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(
        stereo.T.reshape(1, -1).copy(), format="s16", layout="stereo"
    )
    frame.sample_rate = 48_000
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=48_000, layout="stereo")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    audio = decode_audio(buffer.getvalue())
    assert len(audio.samples) == pytest.approx(SAMPLE_RATE, abs=32)


def test_format_is_detected_by_content_not_name(tone):
    # The decoder never sees a file name: FLAC bytes are FLAC whatever the upload said.
    flac = encode_pcm(tone, RATE, "flac", "flac", RATE)
    assert decode_audio(flac).container == "flac"


def test_empty_file_is_refused():
    error = _refusal(b"")
    assert (error.status, error.type, error.param) == (400, "invalid_request_error", "file")
    assert "empty" in error.message


@pytest.mark.parametrize(
    "content",
    [b"this is plainly not audio, just some text" * 20, bytes(range(256)) * 40],
    ids=["text", "random-bytes"],
)
def test_non_audio_bytes_are_refused(content):
    error = _refusal(content)
    assert (error.status, error.param) == (400, "file")
    assert "Supported formats" in error.message


def test_image_is_refused_as_unsupported():
    png = io.BytesIO()
    with av.open(png, "w", format="image2pipe") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 8, 8, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    error = _refusal(png.getvalue())
    assert (error.status, error.param) == (400, "file")


@pytest.mark.parametrize("muxer", ["aiff", "au"])
def test_unsupported_container_is_refused(tone, muxer):
    content = encode_pcm(tone, RATE, muxer, "pcm_s16be", RATE)
    error = _refusal(content)
    assert (error.status, error.param) == (400, "file")
    assert "Unsupported file format" in error.message


def test_corrupt_body_after_a_valid_header_is_refused(tone):
    mp3 = encode_pcm(tone, RATE, "mp3", "libmp3lame", RATE)
    garbage = np.random.default_rng(1).integers(0, 256, len(mp3), dtype=np.uint8).tobytes()
    error = _refusal(mp3[:4] + garbage)
    assert (error.status, error.param) == (400, "file")


def test_truncated_file_decodes_what_is_there(tone):
    mp3 = encode_pcm(tone, RATE, "mp3", "libmp3lame", RATE)
    audio = decode_audio(mp3[: len(mp3) // 2])
    assert 0.4 < audio.duration < 1.1


def test_audio_shorter_than_a_tenth_of_a_second_is_refused():
    short = encode_pcm(np.zeros(RATE // 20, np.int16), RATE, "wav", "pcm_s16le", RATE)
    error = _refusal(short)
    assert (error.status, error.param, error.code) == (400, "file", "audio_too_short")


def test_samples_match_faster_whisper_own_decoder_exactly(tone):
    # So the gateway's transcripts are those of bare faster-whisper on the same file.
    from faster_whisper import decode_audio as faster_whisper_decode

    mp3 = encode_pcm(tone, RATE, "mp3", "libmp3lame", RATE)
    np.testing.assert_array_equal(decode_audio(mp3).samples, faster_whisper_decode(io.BytesIO(mp3)))
