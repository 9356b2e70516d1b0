"""End to end: the official SDK -> ARouter -> a second ARouter (its local engines) as the
upstream, over real loopback sockets; plus a dead upstream that falls back to a local engine.
"""

import socket

import openai
import pytest
from django.conf import settings

from tests.peer_arouter import PeerARouter
from tests.speech_fixtures import *  # noqa: F403
from tests.upstream_helpers import catalog_from, model_table, record_of, upstream_table
from usage.models import UsageRecord

pytestmark = pytest.mark.engines
PEER_KEY_ENV = "ARUPSTREAM_PEER_KEY"


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    server = PeerARouter(tmp_path_factory.mktemp("peer-arouter")).start()
    yield server
    server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def via_peer(peer, tmp_path, monkeypatch):
    """The live server's catalog: the usual models plus `peer/...` routed to the peer."""
    monkeypatch.setenv(PEER_KEY_ENV, peer.key)
    text = settings.AROUTER_CATALOG.read_text() + "\n"
    text += upstream_table("peer", peer.url, PEER_KEY_ENV)
    text += upstream_table(
        "deadpeer", f"http://127.0.0.1:{_closed_port()}/v1", max_retries=1, backoff_base=0.01
    )
    text += model_table("peer/chat", "chat", "peer", "local/gemma-3-270m",
                        price={"per_million_text_input_tokens": 0.1,
                               "per_million_text_output_tokens": 0.1})  # fmt: skip
    text += model_table("peer/tts", "speech", "peer", "local/piper",
                        price={"per_million_characters": 15})  # fmt: skip
    text += model_table("peer/whisper", "transcription", "peer", "local/whisper-tiny.en",
                        price={"per_audio_minute": 0.006})  # fmt: skip
    text += model_table("peer/whisper-base", "transcription", "peer", "local/whisper-base",
                        price={"per_audio_minute": 0.006})  # fmt: skip
    text += (
        '[models."peer/audio-chat"]\nkind = "chat"\nprovider = "cascade"\n'
        'target = "peer/chat"\ninput_modalities = ["text", "audio"]\n'
        'output_modalities = ["text", "audio"]\n'
        "price = { per_million_audio_input_tokens = 40, per_million_audio_output_tokens = 80 }\n"
        'options = { transcriber = "peer/whisper", synthesizer = "peer/tts", '
        "audio_tokens_per_second = 10 }\n\n"
    )
    text += upstream_table("peer-small", peer.url, PEER_KEY_ENV, max_upload_mb=0.5)
    text += model_table("peer/whisper-small-limit", "transcription", "peer-small",
                        "local/whisper-tiny.en", price={"per_audio_minute": 0.006})  # fmt: skip
    text += model_table("peer/missing", "chat", "peer", "nobody/nothing")
    text += model_table("deadpeer/tts", "speech", "deadpeer", "local/piper",
                        price={"per_million_characters": 15},
                        fallbacks=["local/piper"])  # fmt: skip
    with catalog_from(tmp_path / "catalog.toml", text):
        yield peer


def test_upstream_models_are_listed_without_their_address(openai_client, via_peer):
    model = openai_client.models.retrieve("peer/tts")
    assert (model.served_by, model.alias_of) == ("peer", None)
    assert not hasattr(model, "route")  # the upstream's target and provider stay internal
    listing = openai_client.models.with_raw_response.list()
    assert str(via_peer.port) not in listing.text
    assert via_peer.key not in listing.text


def test_chat_completion_through_the_peer(openai_client, via_peer):
    completion = openai_client.chat.completions.create(
        model="peer/chat", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
    )
    assert completion.model == "peer/chat"
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    record = UsageRecord.objects.get(model="peer/chat")
    assert record.provider == "upstream:peer"
    assert record.attempts == 1
    assert record.cost > 0


def test_streamed_chat_through_the_peer(openai_client, via_peer):
    stream = openai_client.chat.completions.create(
        model="peer/chat",
        messages=[{"role": "user", "content": "Count: one, two"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage.completion_tokens > 0
    assert record_of("peer/chat").provider == "upstream:peer"


def test_streamed_speech_through_the_peer_is_billed(openai_client, via_peer):
    text = "Hello from the second gateway. It speaks through the first one."
    with openai_client.audio.speech.with_streaming_response.create(
        model="peer/tts", voice="alloy", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        pieces = list(response.iter_bytes())
    audio = b"".join(pieces)
    assert len(audio) > 24_000  # more than half a second of 24 kHz 16-bit speech
    record = record_of("peer/tts")
    assert record.provider == "upstream:peer"
    assert record.characters == len(text)
    assert record.cost > 0


def test_speech_sse_through_the_peer(openai_client, via_peer):
    with openai_client.audio.speech.with_streaming_response.create(
        model="peer/tts", voice="nova", input="Short one.", stream_format="sse"
    ) as response:
        body = response.read().decode()
    assert '"type":"speech.audio.delta"' in body.replace(" ", "")
    assert '"type":"speech.audio.done"' in body.replace(" ", "")


def test_dead_upstream_falls_back_to_the_local_engine(openai_client, via_peer):
    audio = openai_client.audio.speech.create(
        model="deadpeer/tts", voice="alloy", input="Fallback works.", response_format="wav"
    ).read()
    assert audio[:4] == b"RIFF"
    record = record_of("deadpeer/tts")
    assert record.provider == "piper"
    assert record.attempts == 3  # two connect errors (max_retries = 1), then piper
    assert record.status_code == 200


def test_upstream_refusal_keeps_its_status_and_message(openai_client, via_peer):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(
            model="peer/missing", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert caught.value.code == "model_not_found"
    assert "nobody/nothing" in caught.value.message
    assert str(via_peer.port) not in caught.value.message
    record = UsageRecord.objects.get(model="peer/missing")
    assert (record.status_code, record.cost) == (404, 0)


# --- speech to text through the peer ------------------------------------------------------


def _say(english_pcm, repeats: int, rate_factor: int = 1, channels: int = 1) -> bytes:
    """The test sentence `repeats` times with 1 s pauses, as a 16-bit WAV."""
    import io
    import wave

    import numpy as np

    pause = np.zeros(24_000, dtype=np.int16)
    pcm = np.concatenate([np.concatenate([english_pcm, pause])] * repeats)
    pcm = np.repeat(pcm, rate_factor * channels)  # upsampled by repetition, then interleaved
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(24_000 * rate_factor)
        out.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def test_transcription_through_the_peer(openai_client, via_peer, english_wav):
    transcript = openai_client.audio.transcriptions.create(
        model="peer/whisper",
        file=(english_wav.name, english_wav.content),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert "quick brown fox" in transcript.text.lower()
    assert transcript.duration == pytest.approx(english_wav.seconds, abs=0.1)
    assert transcript.words
    assert transcript.segments
    record = UsageRecord.objects.get(model="peer/whisper")
    assert record.provider == "upstream:peer"
    assert english_wav.seconds - 0.1 <= record.audio_seconds_in < english_wav.seconds + 1
    assert record.cost > 0


def test_streamed_transcription_through_the_peer(openai_client, via_peer, english_wav):
    stream = openai_client.audio.transcriptions.create(
        model="peer/whisper", file=(english_wav.name, english_wav.content), stream=True
    )
    events = list(stream)
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert events[-1].type == "transcript.text.done"
    assert "quick brown fox" in events[-1].text.lower()
    assert "".join(e.delta for e in events[:-1]).strip() == events[-1].text.strip()
    assert record_of("peer/whisper").cost > 0


def test_translation_through_the_peer(openai_client, via_peer, english_wav):
    translation = openai_client.audio.translations.create(
        model="peer/whisper-base", file=(english_wav.name, english_wav.content)
    )
    assert "fox" in translation.text.lower()
    record = UsageRecord.objects.get(model="peer/whisper-base")
    assert record.endpoint == "/v1/audio/translations"
    assert record.provider == "upstream:peer"


def test_audio_over_the_upstream_limit_is_split_at_pauses(
    openai_client, via_peer, english_pcm, settings
):
    # A 0.5 MB limit: about 16 s of 16 kHz WAV per piece; 6 sentences with pauses ~ 51 s.
    repeats = 6
    audio = _say(english_pcm, repeats)
    seconds = (len(audio) - 44) / 48_000
    transcript = openai_client.audio.transcriptions.create(
        model="peer/whisper-small-limit",
        file=("long.wav", audio),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    text = transcript.text.lower()
    assert text.count("fox") >= repeats - 1
    assert text.count("morning") >= repeats - 2  # tiny.en may drop a clause at an edge
    assert transcript.duration == pytest.approx(seconds, abs=0.05)
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    assert transcript.segments[-1].end <= seconds + 0.05
    assert transcript.segments[-1].end > seconds - 3
    words = [w.start for w in transcript.words]
    assert words == sorted(words)
    record = UsageRecord.objects.get(model="peer/whisper-small-limit")
    assert seconds <= record.audio_seconds_in < seconds + 1  # billed by the started second


def _float_wav(pcm, rate: int, channels: int) -> bytes:
    """32-bit float WAV (format tag 3): big files from little speech."""
    import struct

    import numpy as np

    data = np.repeat(pcm.astype("<f4") / 32768, channels).tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    riff += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def test_a_40_mb_file_against_a_25_mb_upstream(openai_client, via_peer, english_pcm, settings):
    import numpy as np

    settings.AROUTER_MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # our own limit may be larger
    # 96 kHz stereo float32 is 768 KB/s: 40 MB is under a minute of speech to transcribe.
    pause = np.zeros(24_000, dtype=np.int16)
    once = np.repeat(np.concatenate([english_pcm, pause]), 4)  # 24 kHz -> 96 kHz
    repeats = -(-41_000_000 // (len(once) * 2 * 4))
    audio = _float_wav(np.concatenate([once] * repeats), 96_000, 2)
    assert len(audio) > 40_000_000
    seconds = len(once) * repeats / 96_000
    transcript = openai_client.audio.transcriptions.create(
        model="peer/whisper",
        file=("long.wav", audio),
        response_format="verbose_json",
        timestamp_granularities=["segment"],
    )
    # Whisper may fold a run of identical sentences into fewer (its repetition check falls
    # back to sampling): the whole clip was heard if most are there and the segments reach
    # its end.
    assert transcript.text.lower().count("fox") > repeats // 2
    assert transcript.duration == pytest.approx(seconds, abs=0.05)
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    assert seconds / 2 < transcript.segments[-1].end <= seconds + 0.05
    record = UsageRecord.objects.get(model="peer/whisper")
    assert seconds <= record.audio_seconds_in < seconds + 1
    assert record.status_code == 200


# --- audio chat with every stage upstream ---------------------------------------------------


def test_streamed_audio_chat_with_every_stage_on_the_upstream(openai_client, via_peer, english_wav):
    import base64

    stream = openai_client.chat.completions.create(
        model="peer/audio-chat",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "pcm16"},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Repeat after me."},
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": base64.b64encode(english_wav.content).decode(),
                            "format": "wav",
                        },
                    },
                ],
            }
        ],
        max_completion_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    pcm, transcript, usage = bytearray(), "", None
    for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices and chunk.choices[0].delta.audio:
            audio = chunk.choices[0].delta.audio
            audio = audio if isinstance(audio, dict) else audio.model_dump()
            pcm += base64.b64decode(audio.get("data") or "")
            transcript += audio.get("transcript") or ""
    assert transcript.strip()
    assert len(pcm) > 4800  # spoken by the peer's Piper, relayed as pcm16
    assert usage.prompt_tokens_details.audio_tokens > 0  # heard by the peer's Whisper
    assert usage.completion_tokens_details.audio_tokens > 0
    record = record_of("peer/audio-chat")
    assert record.provider == "upstream:peer"
    assert record.cost > 0
