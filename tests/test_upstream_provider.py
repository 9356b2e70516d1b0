"""UpstreamProvider and its client against the fault-injecting server on loopback:
answers, retries, cooldown, timeouts, error mapping, streaming, transcoding, chunking."""

import io
import json
import socket
import time
import wave

import av
import numpy as np
import pytest

from core.errors import OpenAIError
from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.attempts import start_attempt_log
from gateway.providers.base import (
    AudioUpload,
    ChatJob,
    ChatReply,
    SpeechJob,
    SpeechMeter,
    TextMessage,
    TranscriptionJob,
)
from gateway.providers.upstream_client import json_body
from tests.fault_server import FaultServer
from tests.upstream_helpers import catalog_from, model_table, upstream_table

KEY_ENV = "ARUPSTREAM_TEST_KEY"
SCENARIOS = ("ok", "slow", "limited-once", "limited", "fail-once", "fail", "reset", "truncated",
             "html", "refuse", "crlf", "cookie")  # fmt: skip


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def fault_server():
    server = FaultServer(slow_seconds=3).start()
    yield server
    server.stop()


def fault_catalog(server: FaultServer) -> str:
    fast = {"backoff_base": 0.01, "backoff_max": 1.5, "read_timeout": 2, "request_timeout": 1.5,
            "cooldown_after": 2, "cooldown_seconds": 60}  # fmt: skip
    text = ""
    for scenario in SCENARIOS:
        text += upstream_table(scenario, server.url(scenario), KEY_ENV, **fast)
        text += model_table(f"{scenario}/chat", "chat", scenario, "up-chat")
        text += model_table(f"{scenario}/speech", "speech", scenario, "up-tts",
                            price={"per_million_characters": 15})  # fmt: skip
        text += model_table(f"{scenario}/stt", "transcription", scenario, "up-whisper",
                            price={"per_audio_minute": 0.006})  # fmt: skip
    text += upstream_table("down", f"http://127.0.0.1:{_closed_port()}/v1", **fast)
    text += model_table("down/chat", "chat", "down", "up-chat")
    text += upstream_table("wav-only", server.url("ok"), accepted_formats=["wav"])
    text += model_table("wav-only/stt", "transcription", "wav-only", "up-whisper")
    text += upstream_table("small", server.url("ok"), max_upload_mb=0.1)
    text += model_table("small/stt", "transcription", "small", "up-whisper")
    text += model_table("json-only/stt", "transcription", "ok", "up-whisper",
                        options={"transcript_format": "json"})  # fmt: skip
    text += model_table("crlf/audio-chat", "chat", "crlf", "up-audio",
                        price={"per_million_text_output_tokens": 10},
                        input_modalities=["text", "audio"],
                        output_modalities=["text", "audio"])  # fmt: skip
    text += model_table("fallback/chat", "chat", "fail", "up-chat", fallbacks=["ok/chat"])
    text += model_table("fallback/refused", "chat", "refuse", "up-chat", fallbacks=["ok/chat"])
    text += model_table("fallback/speech", "speech", "down", "up-tts", fallbacks=["ok/speech"])
    return text


@pytest.fixture
def fault_models(fault_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, fault_server.api_key)
    fault_server.reset()
    with catalog_from(tmp_path / "catalog.toml", fault_catalog(fault_server)):
        yield fault_server


def provider(model_id: str):
    return provider_for(catalog().models[model_id])


def chat_job() -> ChatJob:
    return ChatJob(messages=[TextMessage("user", "Say hello")], max_tokens=16)


def tone_wav(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    """Half-second tone bursts with 0.3 s silences between them."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 440 * t) * ((t % 0.8) < 0.5)
    pcm = (signal * 32767).astype("<i2")
    if channels == 2:
        pcm = np.repeat(pcm, 2)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def ogg_opus(seconds: float) -> bytes:
    buffer = io.BytesIO()
    rate = 48000
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        t = np.arange(int(seconds * rate)) / rate
        pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


# --- chat ---------------------------------------------------------------------------------


async def test_chat_completion_uses_target_model_key_and_upstream_usage(fault_models):
    log = start_attempt_log()
    reply = await provider("ok/chat").complete(chat_job())
    assert reply == ChatReply("Hello from the fault server.", "stop", 11, 6)
    seen = fault_models.seen("ok")[0]
    assert seen.json["model"] == "up-chat"
    assert seen.json["messages"] == [{"role": "user", "content": "Say hello"}]
    assert seen.headers["authorization"] == f"Bearer {fault_models.api_key}"
    assert [(a.provider, a.outcome) for a in log.attempts] == [("upstream:ok", "ok")]


async def test_chat_stream_yields_deltas_as_sent_then_the_reply(fault_models):
    items = [item async for item in provider("ok/chat").stream(chat_job())]
    assert items[:-1] == ["Hello", " from", " the", " fault", " server", "."]
    assert items[-1] == ChatReply("Hello from the fault server.", "stop", 11, 6)
    assert fault_models.seen("ok")[0].json["stream"] is True


async def test_429_is_retried_after_retry_after(fault_models):
    log = start_attempt_log()
    started = time.monotonic()
    reply = await provider("limited-once/chat").complete(chat_job())
    assert reply.text == "Hello from the fault server."
    assert time.monotonic() - started >= 0.9  # honoured `retry-after: 1`
    assert [a.outcome for a in log.attempts] == ["429", "ok"]


async def test_500_then_200_is_retried(fault_models):
    log = start_attempt_log()
    reply = await provider("fail-once/chat").complete(chat_job())
    assert reply.completion_tokens == 6
    assert [a.outcome for a in log.attempts] == ["500", "ok"]
    assert len(fault_models.seen("fail-once")) == 2


async def test_persistent_429_is_a_429_envelope_with_retry_after(fault_models):
    with pytest.raises(OpenAIError) as caught:
        await provider("limited/chat").complete(chat_job())
    assert caught.value.status == 429
    assert caught.value.headers["retry-after"] == "1"


async def test_persistent_5xx_is_502_then_the_upstream_cools_down(fault_models):
    log = start_attempt_log()
    with pytest.raises(OpenAIError) as caught:
        await provider("fail/chat").complete(chat_job())
    assert caught.value.status == 502
    assert caught.value.type == "upstream_error"
    assert [a.outcome for a in log.attempts] == ["500", "500", "500"]  # max_retries = 2
    with pytest.raises(OpenAIError):
        await provider("fail/chat").complete(chat_job())
    assert len(fault_models.seen("fail")) == 6
    # cooldown_after = 2 failed requests: the third is refused without touching the upstream.
    log = start_attempt_log()
    with pytest.raises(OpenAIError) as caught:
        await (
            provider("fail/speech").synthesize(SpeechJob("hi", "alloy"), SpeechMeter()).__anext__()
        )
    assert caught.value.status == 503
    assert caught.value.code == "upstream_unavailable"
    assert len(fault_models.seen("fail")) == 6
    assert [a.outcome for a in log.attempts] == ["cooling_down"]


async def test_slow_upstream_is_a_504(fault_models):
    with pytest.raises(OpenAIError) as caught:
        await provider("slow/chat").complete(chat_job())
    assert caught.value.status == 504
    assert caught.value.code == "upstream_timeout"


async def test_unreachable_upstream_is_a_502_without_its_address(fault_models):
    log = start_attempt_log()
    with pytest.raises(OpenAIError) as caught:
        await provider("down/chat").complete(chat_job())
    assert caught.value.status == 502
    assert caught.value.code == "upstream_unreachable"
    assert "127.0.0.1" not in caught.value.message
    assert [a.outcome for a in log.attempts] == ["connect_error"] * 3


async def test_upstream_400_keeps_its_message_but_not_its_address_or_key(fault_models):
    with pytest.raises(OpenAIError) as caught:
        await provider("refuse/chat").complete(chat_job())
    error = caught.value
    assert error.status == 400
    assert error.param == "temperature"
    assert "Invalid value for 'temperature'" in error.message
    assert fault_models.api_key not in error.message
    assert str(fault_models.port) not in error.message
    assert len(fault_models.seen("refuse")) == 1  # a refusal is not retried


async def test_wrong_content_type_is_a_502(fault_models):
    with pytest.raises(OpenAIError) as caught:
        await provider("html/chat").complete(chat_job())
    assert caught.value.status == 502
    assert caught.value.code == "upstream_invalid_response"
    with pytest.raises(OpenAIError) as caught:
        await anext(provider("html/speech").synthesize(SpeechJob("hi", "alloy"), SpeechMeter()))
    assert caught.value.code == "upstream_invalid_response"


async def test_truncated_sse_raises_after_the_deltas_it_had(fault_models):
    received = []

    async def consume():
        async for item in provider("truncated/chat").stream(chat_job()):
            received.append(item)

    with pytest.raises(OpenAIError) as caught:
        await consume()
    assert received == ["Hello", " from"]
    assert caught.value.code == "upstream_stream_interrupted"


async def test_connection_reset_mid_stream_is_not_retried(fault_models):
    received = []

    async def consume():
        job = SpeechJob("hi", "alloy")
        async for chunk in provider("reset/speech").synthesize(job, SpeechMeter()):
            received.append(chunk)

    with pytest.raises(OpenAIError) as caught:
        await consume()
    assert caught.value.code == "upstream_stream_interrupted"
    assert b"".join(received)[:1] == b"\x00"
    assert len(fault_models.seen("reset")) == 1


# --- speech -------------------------------------------------------------------------------


async def test_speech_is_forwarded_chunk_by_chunk_and_metered(fault_models):
    meter = SpeechMeter()
    job = SpeechJob("Hello there.", "nova", response_format="pcm", speed=1.25)
    chunks = [chunk async for chunk in provider("ok/speech").synthesize(job, meter)]
    assert b"".join(chunks) == b"".join(bytes([i]) * 4800 for i in range(10))
    assert len(chunks) > 1  # not buffered into one piece
    assert meter.characters == len("Hello there.")
    assert meter.audio_seconds == pytest.approx(1.0)
    assert fault_models.seen("ok")[0].json == {
        "model": "up-tts", "input": "Hello there.", "voice": "nova", "response_format": "pcm",
        "speed": 1.25,
    }  # fmt: skip


# --- transcription ------------------------------------------------------------------------


async def test_transcription_asks_for_verbose_json_with_words(fault_models):
    job = TranscriptionJob(AudioUpload(tone_wav(3.0), "a.wav", "audio/wav"), word_timestamps=True)
    transcript = await provider("ok/stt").transcribe(job)
    assert transcript.text == "w0 w1 w2"
    assert transcript.duration == pytest.approx(3.0)
    assert [s.start for s in transcript.segments] == [0.0, 1.0, 2.0]
    assert transcript.words[1].word == "w1"
    form = fault_models.seen("ok")[0].form
    assert form["model"] == ["up-whisper"]
    assert form["timestamp_granularities[]"] == ["segment", "word"]


async def test_json_only_upstream_duration_is_measured_so_usage_is_not_zero(fault_models):
    job = TranscriptionJob(AudioUpload(tone_wav(2.5), "a.wav"))
    transcript = await provider("json-only/stt").transcribe(job)
    assert transcript.text == "w0 w1 w2"
    assert transcript.duration == pytest.approx(2.5, abs=0.01)


async def test_unaccepted_format_is_transcoded_to_wav(fault_models):
    job = TranscriptionJob(AudioUpload(ogg_opus(2.0), "voice.ogg", "audio/ogg"))
    transcript = await provider("wav-only/stt").transcribe(job)
    seen = fault_models.seen("ok")[0]
    assert seen.file_name == "audio.wav"
    assert transcript.duration == pytest.approx(2.0, abs=0.05)


async def test_oversize_upload_is_split_under_the_limit_and_stitched(fault_models):
    # 0.1 MB limit: about 3 s of 16 kHz WAV per piece; a 10 s stereo 44.1 kHz file needs 4+.
    fault_models.max_file_bytes = int(0.1 * 1024 * 1024)
    try:
        job = TranscriptionJob(
            AudioUpload(tone_wav(10.0, rate=44100, channels=2), "long.wav"), word_timestamps=True
        )
        transcript = await provider("small/stt").transcribe(job)
    finally:
        fault_models.max_file_bytes = 0
    pieces = fault_models.seen("ok")
    assert len(pieces) >= 4
    assert all(p.file_size <= 0.1 * 1024 * 1024 for p in pieces)
    assert transcript.duration == pytest.approx(10.0, abs=0.01)
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))
    assert transcript.segments[-1].end == pytest.approx(10.0, abs=0.05)
    word_starts = [w.start for w in transcript.words]
    assert word_starts == sorted(word_starts)
    assert all(
        s.end <= e.start + 1e-6
        for s, e in zip(transcript.segments, transcript.segments[1:], strict=False)
    )


# --- fallbacks ----------------------------------------------------------------------------


async def test_fallback_answers_when_the_primary_fails_and_all_attempts_are_logged(fault_models):
    log = start_attempt_log()
    reply = await provider("fallback/chat").complete(chat_job())
    assert reply.text == "Hello from the fault server."
    assert [(a.provider, a.outcome) for a in log.attempts] == [
        ("upstream:fail", "500"), ("upstream:fail", "500"), ("upstream:fail", "500"),
        ("upstream:ok", "ok"),
    ]  # fmt: skip
    assert log.final_provider == "upstream:ok"


async def test_client_errors_do_not_fall_back(fault_models):
    with pytest.raises(OpenAIError) as caught:
        await provider("fallback/refused").complete(chat_job())
    assert caught.value.status == 400
    assert fault_models.seen("ok") == []


async def test_streams_fall_back_before_their_first_byte(fault_models):
    log = start_attempt_log()
    job = SpeechJob("Hi", "alloy", response_format="pcm")
    chunks = [c async for c in provider("fallback/speech").synthesize(job, SpeechMeter())]
    assert len(b"".join(chunks)) == 48000
    assert log.final_provider == "upstream:ok"
    assert log.attempts[0].outcome == "connect_error"


# --- per-team credentials -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_team_with_its_own_key_uses_it_and_others_use_the_catalogs(fault_models, team):
    from asgiref.sync import sync_to_async

    from credentials.models import ProviderCredential

    team_key = "sk-team-own-key-9876"
    await sync_to_async(ProviderCredential.store)(team, "ok", team_key)
    start_attempt_log(team_id=team.pk)
    await provider("ok/chat").complete(chat_job())
    start_attempt_log(team_id=team.pk + 1000)
    await provider("ok/chat").complete(chat_job())
    sent = [seen.headers["authorization"] for seen in fault_models.seen("ok")]
    assert sent == [f"Bearer {team_key}", f"Bearer {fault_models.api_key}"]


@pytest.mark.django_db(transaction=True)
async def test_an_upstreams_cookies_are_never_sent_back(fault_models, team):
    """Requests share one pool per upstream: a cookie set in answer to one team's request
    (here, naming that team's own key) must not ride along on anyone's next request."""
    from asgiref.sync import sync_to_async

    from credentials.models import ProviderCredential

    await sync_to_async(ProviderCredential.store)(team, "cookie", "sk-team-cookie-4242")
    for team_id in (team.pk, team.pk + 1000, team.pk):
        start_attempt_log(team_id=team_id)
        answer = await provider("cookie/chat").complete(chat_job())
        assert answer.text == "Hello."
    seen = fault_models.seen("cookie")
    assert [s.headers["authorization"] for s in seen] == [
        "Bearer sk-team-cookie-4242",
        f"Bearer {fault_models.api_key}",
        "Bearer sk-team-cookie-4242",
    ]
    assert all("cookie" not in s.headers for s in seen)


@pytest.mark.django_db(transaction=True)
async def test_a_teams_key_is_scrubbed_from_upstream_messages(fault_models, team):
    from asgiref.sync import sync_to_async

    from credentials.models import ProviderCredential

    team_key = "sk-team-secret-5555"
    await sync_to_async(ProviderCredential.store)(team, "refuse", team_key)
    start_attempt_log(team_id=team.pk)
    with pytest.raises(OpenAIError) as caught:
        await provider("refuse/chat").complete(chat_job())
    assert fault_models.seen("refuse")[0].headers["authorization"] == f"Bearer {team_key}"
    assert team_key not in caught.value.message
    assert "Invalid value for 'temperature'" in caught.value.message


# --- whole-body relay and cooldown recovery -------------------------------------------------


async def test_relay_chat_passes_the_body_through_with_only_the_model_swapped(fault_models):
    body = {"model": "ok/chat", "messages": [{"role": "user", "content": "hi"}], "n": 1}
    answer = await provider("ok/chat").relay_chat(body)
    assert answer["choices"][0]["message"]["content"] == "Hello from the fault server."
    assert fault_models.seen("ok")[0].json == {**body, "model": "up-chat"}


async def test_relay_chat_stream_forwards_the_upstreams_chunks(fault_models):
    body = {"model": "ok/chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    chunks = [chunk async for chunk in provider("ok/chat").relay_chat_stream(body)]
    assert chunks[0]["id"] == "chatcmpl-fault"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello from the fault server."
    assert chunks[-1]["usage"]["total_tokens"] == 17  # the last before its [DONE]


async def test_crlf_framed_events_read_as_any_other(fault_models):
    items = [item async for item in provider("crlf/chat").stream(chat_job())]
    assert items[-1] == ChatReply("Hello from the fault server.", "stop", 11, 6)
    body = {"model": "crlf/chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    chunks = [chunk async for chunk in provider("crlf/chat").relay_chat_stream(body)]
    assert chunks[-1]["usage"]["total_tokens"] == 17


@pytest.mark.django_db(transaction=True)
async def test_a_relayed_crlf_stream_reaches_the_client_and_is_billed(fault_models, api_key):
    """CRLF framing is many servers' default: every chunk arrives, then [DONE], and the
    ledger bills the upstream's usage (once forwarded as nothing and recorded at $0)."""
    from django.test import AsyncClient

    from usage.models import UsageRecord

    response = await AsyncClient().post(
        "/v1/chat/completions",
        {
            "model": "crlf/audio-chat",
            "modalities": ["text", "audio"],
            "audio": {"voice": "alloy", "format": "pcm16"},
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key.raw}"},
    )
    assert response.status_code == 200, response.content
    events = [e async for e in response.streaming_content]
    data = [e.decode().removeprefix("data: ").strip() for e in events]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from the fault server."
    assert all(c["model"] == "crlf/audio-chat" for c in chunks)
    row = await UsageRecord.objects.aget(api_key=api_key.api_key)
    assert (row.status_code, row.text_tokens_out) == (200, 6)
    assert row.cost > 0


def test_cooldown_ends_after_its_time():
    from gateway.providers.upstream_client import Health, UpstreamOptions

    health = Health(UpstreamOptions(cooldown_after=2, cooldown_seconds=0.2))
    health.failed()
    assert not health.is_cooling()
    health.failed()
    assert health.is_cooling()
    time.sleep(0.25)
    assert not health.is_cooling()
    health.failed()
    assert not health.is_cooling()  # the count starts again after a cooldown


# --- uploads on the wire --------------------------------------------------------------------


def spilled(tmp_path, audio: bytes, filename: str) -> AudioUpload:
    """An upload as Django leaves a large one: in its temporary file, not in memory."""
    path = tmp_path / "upload.tmp"
    path.write_bytes(audio)
    return AudioUpload(filename=filename, content_type="audio/wav", path=str(path))


async def test_a_spilled_upload_is_sent_whole_and_again_on_a_retry(fault_models, tmp_path):
    audio = tone_wav(2.0)
    job = TranscriptionJob(spilled(tmp_path, audio, "clip.wav"))
    transcript = await provider("fail-once/stt").transcribe(job)
    assert transcript.text == "w0 w1"
    first, retry = fault_models.seen("fail-once")
    assert (first.file_name, first.file_size) == ("clip.wav", len(audio))
    assert (retry.file_name, retry.file_size) == ("clip.wav", len(audio))


async def test_a_filename_with_quotes_cannot_break_out_of_its_header(fault_models):
    upload = AudioUpload(tone_wav(1.0), 'evil"; name="model.wav', "")
    await provider("ok/stt").transcribe(TranscriptionJob(upload))
    seen = fault_models.seen("ok")[0]
    assert seen.form["model"] == ["up-whisper"]
    assert seen.file_name == "evil%22; name=%22model.wav"
    assert seen.file_size == len(upload.content)


# --- capabilities behind a fallback chain ---------------------------------------------------


def capabilities(provider_: object) -> set[str]:
    from gateway.providers.base import (
        ChatModel,
        ChatRelay,
        Preloadable,
        Synthesizer,
        Transcriber,
        VoiceChat,
    )

    declared = (Transcriber, Synthesizer, ChatModel, ChatRelay, VoiceChat, Preloadable)
    return {c.__name__ for c in declared if isinstance(provider_, c)}


FALLBACK_ENGINES = """
[models."fallback/audio-chat"]
kind = "chat"
provider = "cascade"
target = "ok/chat"
fallbacks = ["ok/chat"]
options = { transcriber = "ok/stt", synthesizer = "ok/speech" }

[models."fallback/piper"]
kind = "speech"
provider = "piper"
target = "packaged:en_US-joe-medium"
fallbacks = ["ok/speech"]
"""


async def test_a_fallback_chain_has_exactly_the_capabilities_of_its_model(
    fault_server, tmp_path, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, fault_server.api_key)
    fault_server.reset()
    text = fault_catalog(fault_server) + FALLBACK_ENGINES
    with catalog_from(tmp_path / "catalog.toml", text):
        cascade, upstream = provider("fallback/audio-chat"), provider("fallback/chat")
        piper = provider("fallback/piper")
        assert capabilities(cascade) == {"ChatModel", "VoiceChat"}
        assert capabilities(upstream) == {"Transcriber", "Synthesizer", "ChatModel", "ChatRelay"}
        assert capabilities(piper) == {"Synthesizer", "Preloadable"}
        for wrapped in (cascade, upstream, piper):
            assert capabilities(wrapped) == capabilities(wrapped.primary)
        # Audio chat through the chain is the cascade's own: it hears with its transcriber.
        assert "nova" in cascade.voices()
        heard = await cascade.hear(tone_wav(2.0), "wav", "messages[0].content[0]")
        assert (heard.text, heard.seconds) == ("w0 w1", pytest.approx(2.0))


def test_json_bodies_are_compact_utf8_even_past_orjsons_integer_range():
    payload = {"model": "m", "input": "caf\u00e9", "seed": 2**70, "speed": 1.0}

    assert (
        json_body(payload)
        == '{"model":"m","input":"café","seed":1180591620717411303424,"speed":1.0}'.encode()
    )
    assert json.loads(json_body({**payload, "seed": 7})) == {**payload, "seed": 7}


@pytest.mark.parametrize(
    ("base_url", "path", "expected"),
    [
        ("http://h:1/v1", "/audio/speech", "http://h:1/v1/audio/speech"),
        ("http://h:1/v1/", "audio/speech", "http://h:1/v1/audio/speech"),
        ("http://h:1", "/v2/transcript/abc", "http://h:1/v2/transcript/abc"),
        (
            "http://h:1/ok",
            "/openai/x?api-version=2024-10-21",
            "http://h:1/ok/openai/x?api-version=2024-10-21",
        ),
        (
            "https://g/",
            "/v1beta/models/m%2F1:generateContent",
            "https://g/v1beta/models/m%2F1:generateContent",
        ),
        ("http://h:1/v1", "models/m:generate", "http://h:1/v1/models/m:generate"),
        ("http://h:1/v1", "/a b", "http://h:1/v1/a%20b"),
        ("http://h:1/v1", "/cb?next=http://x/y", "http://h:1/v1/cb?next=http://x/y"),
        ("http://h:1/v1", "http://other:2/x?y=1", "http://other:2/x?y=1"),
    ],
)
def test_paths_join_the_base_url_as_httpx_joins_them(base_url, path, expected):
    import httpx

    from gateway.providers.upstream_client import upstream_url

    assert str(upstream_url(base_url, path)) == expected
    assert (
        upstream_url(base_url, path)
        == httpx.AsyncClient(base_url=base_url).build_request("GET", path).url
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/listen", [("model", "nova-3"), ("keyterm", "a b"), ("keyterm", "x/y&z=1")]),
        ("/v1/speak?model=aura", {"encoding": "mp3", "voice": "é"}),
        ("/v1/listen", None),
    ],
)
async def test_query_parameters_join_the_paths_query_as_httpx_merges_them(path, params):
    import httpx

    from gateway.catalog import Upstream
    from gateway.providers.upstream_client import UpstreamClient

    client = UpstreamClient(Upstream(name="q", base_url="http://h:1/base"))
    built = client.build_request("GET", path, params=params)
    expected = httpx.URL(f"http://h:1/base{path}")
    assert built.url == (expected.copy_merge_params(params) if params else expected)
    await client.aclose()
