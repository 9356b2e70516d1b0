"""Audio chat through the official OpenAI SDK against a live server: the spec's snippets.

`openai/gpt-5.4-audio-preview` routes to `local/audio-chat`: Whisper hears, Gemma 3 270M
(a tiny BASE model whose replies are not meaningful) answers, Piper speaks. The tests
therefore check the plumbing: the spoken question reached the text model as text, the
returned audio says what its transcript says, usage and the ledger add up. Tests that read
what the text model was asked put it on the fault server (tests/cascade_text_model.py),
which records each request it is sent.
"""

import base64
import io
import json
import wave

import av
import numpy as np
import pytest

from gateway.audio.encode import wav_file
from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.base import AudioUpload, TranscriptionJob
from tests.cascade_text_model import FAULT_REPLY, text_model_on_fault_server
from tests.chat_speech import heard_error_rate, speak, word_error_rate
from usage.models import UsageRecord

pytestmark = pytest.mark.engines

MODEL = "openai/gpt-5.4-audio-preview"
QUESTION = "What is the capital of France?"
MAX_WER = 0.3  # the spoken question, heard by Whisper
MAX_HEARD_ERROR = 0.15  # a spoken reply heard back, by characters (see heard_error_rate)


def mp3_bytes(pcm: np.ndarray) -> bytes:
    from gateway.audio.encode import encode_all

    return encode_all(pcm, "mp3", 24_000)


def transcribe(audio: bytes, filename: str) -> str:
    whisper = provider_for(catalog().get("local/whisper-base"))
    job = TranscriptionJob(upload=AudioUpload(content=audio, filename=filename))
    from asgiref.sync import async_to_sync

    return async_to_sync(whisper.transcribe)(job).text


def decoded_seconds(audio: bytes) -> float:
    with av.open(io.BytesIO(audio)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return samples / container.streams.audio[0].rate


@pytest.fixture
def prompts(tmp_path):
    """The cascade's text model on the fault server: every chat body it is sent, in order."""
    with text_model_on_fault_server(tmp_path) as asked:
        yield asked


def last_user_text(body: dict) -> str:
    turn = body["messages"][-1]
    assert turn["role"] == "user"
    return turn["content"]


@pytest.fixture(scope="module")
def question_wav() -> str:
    return base64.b64encode(wav_file(speak(QUESTION))).decode("utf-8")


def test_spec_input_audio_question(openai_client, question_wav, prompts, live_key):
    # The spec's snippet, verbatim apart from the file read.
    audio_data = question_wav
    response = openai_client.chat.completions.create(
        model="openai/gpt-5.4-audio-preview",
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": audio_data,
                            "format": "wav",
                        },
                    }
                ],
            }
        ],
        max_completion_tokens=16,
    )
    print(response.choices[0].message.content)
    assert isinstance(response.choices[0].message.content, str)
    assert response.choices[0].message.audio is None
    # The spoken question reached the text model as its transcript.
    (body,) = prompts()
    assert word_error_rate(QUESTION, last_user_text(body)) <= MAX_WER
    usage = response.usage
    assert usage.prompt_tokens_details.audio_tokens > 0
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.audio_tokens == 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    record = UsageRecord.objects.get(api_key=live_key.api_key)
    assert record.audio_tokens_in == usage.prompt_tokens_details.audio_tokens
    assert record.audio_seconds_in == pytest.approx(len(speak(QUESTION)) / 24_000, abs=0.1)
    assert record.cost > 0


def test_spec_audio_output_request_mp3(openai_client, live_key):
    response = openai_client.chat.completions.create(
        model="openai/gpt-5.4-audio-preview",
        modalities=["text", "audio"],
        audio={"voice": "nova", "format": "mp3"},
        messages=[{"role": "user", "content": "Tell me a short joke."}],
        max_completion_tokens=24,
        seed=5,
    )
    message = response.choices[0].message
    assert message.content is None
    assert message.audio.id.startswith("audio_")
    assert message.audio.expires_at >= response.created + 3600
    assert message.audio.transcript.strip()
    audio = base64.b64decode(message.audio.data)
    assert audio[:3] == b"ID3" or audio[0] == 0xFF  # an MP3 stream
    assert decoded_seconds(audio) > 0.3
    heard = transcribe(audio, "reply.mp3")
    assert heard_error_rate(message.audio.transcript, heard) <= MAX_HEARD_ERROR, (
        message.audio.transcript,
        heard,
    )
    usage = response.usage
    assert usage.completion_tokens_details.audio_tokens > 0
    assert usage.completion_tokens >= usage.completion_tokens_details.audio_tokens
    record = UsageRecord.objects.get(api_key=live_key.api_key)
    assert record.audio_tokens_out == usage.completion_tokens_details.audio_tokens
    assert float(record.cost) == pytest.approx(response.usage.model_extra["cost"])

    # A later turn hands the reply back by id; its transcript joins the conversation.
    follow_up = openai_client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Tell me a short joke."},
            {"role": "assistant", "audio": {"id": message.audio.id}},
            {"role": "user", "content": "Another one."},
        ],
        max_completion_tokens=4,
    )
    assert follow_up.usage.prompt_tokens > response.usage.prompt_tokens - 5


def test_streamed_audio_pcm16_through_create_stream(openai_client, prompts):
    # The spec's streaming example, with create(stream=True): the SDK's
    # `chat.completions.stream()` helper yields events (a ChunkEvent has `.chunk`, not
    # `.choices`), so streamed audio is read from `delta.audio` of created chunks.
    stream = openai_client.chat.completions.create(
        model="openai/gpt-5.4-audio-preview",
        modalities=["text", "audio"],
        audio={"voice": "nova", "format": "pcm16"},
        messages=[{"role": "user", "content": "Tell me a short joke."}],
        max_completion_tokens=24,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    pcm = bytearray()
    transcript = ""
    ids, expiries, kinds = set(), [], []
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.audio:
            # The SDK keeps delta.audio as the raw dict from the chunk.
            audio = delta.audio if isinstance(delta.audio, dict) else delta.audio.model_dump()
            if audio.get("id"):
                ids.add(audio["id"])
            if audio.get("data"):
                pcm += base64.b64decode(audio["data"])
                kinds.append("data")
            if audio.get("transcript"):
                transcript += audio["transcript"]
                kinds.append("transcript")
            if audio.get("expires_at"):
                expiries.append(audio["expires_at"])
        assert delta.content is None
    assert len(ids) == 1
    assert len(expiries) == 1
    assert kinds.index("transcript") < kinds.index("data")  # text runs ahead of speech
    assert len(pcm) % 2 == 0
    # A quarter second or more of 24 kHz pcm16: the reply's length varies (sampled, 12 tokens).
    assert len(pcm) > 12_000
    samples = np.frombuffer(bytes(pcm), dtype="<i2")
    heard = transcribe(wav_file(samples), "reply.wav")
    assert heard_error_rate(transcript, heard) <= MAX_HEARD_ERROR, (transcript, heard)
    assert usage.completion_tokens_details.audio_tokens > 0
    assert len(prompts()) == 1


def test_undecodable_audio_is_a_400_naming_the_part(openai_client):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Listen:"},
                        {
                            "type": "input_audio",
                            "input_audio": {
                                "data": base64.b64encode(b"this is not audio at all" * 20).decode(),
                                "format": "mp3",
                            },
                        },
                    ],
                }
            ],
        )
    assert caught.value.param == "messages[0].content[1].input_audio.data"


def test_mp3_question_and_wav_reply(openai_client, prompts):
    response = openai_client.chat.completions.create(
        model="local/audio-chat",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": base64.b64encode(mp3_bytes(speak(QUESTION))).decode(),
                            "format": "mp3",
                        },
                    }
                ],
            },
        ],
        max_completion_tokens=12,
        temperature=0,
    )
    reply = response.choices[0].message.audio
    audio = base64.b64decode(reply.data)
    assert audio[:4] == b"RIFF"
    with wave.open(io.BytesIO(audio)) as clip:
        assert clip.getframerate() == 24_000
        assert clip.getnframes() == (len(audio) - 44) // 2  # exact sizes in the header
    heard = transcribe(audio, "reply.wav")
    assert heard_error_rate(reply.transcript, heard) <= MAX_HEARD_ERROR, (reply.transcript, heard)
    (body,) = prompts()
    assert [turn["role"] for turn in body["messages"]] == ["system", "user"]
    assert word_error_rate(QUESTION, last_user_text(body)) <= MAX_WER


def test_spec_js_snippet_under_node(run_js_snippet, tmp_path, prompts):
    (tmp_path / "question.wav").write_bytes(wav_file(speak(QUESTION)))
    run = run_js_snippet("chat_audio.mjs", tmp_path)
    assert run.returncode == 0, run.stderr
    usage = json.loads(run.stderr.strip().splitlines()[-1])
    assert usage["prompt_tokens_details"]["audio_tokens"] > 0
    (body,) = prompts()
    assert word_error_rate(QUESTION, last_user_text(body)) <= MAX_WER


# --- the cascade's text model on an upstream ---------------------------------------------


def test_cascade_with_an_upstream_text_model(openai_client, prompts, live_key):
    """Whisper and Piper here; the words come from another OpenAI-compatible server."""
    response = openai_client.chat.completions.create(
        model="local/audio-chat",
        modalities=["text", "audio"],
        audio={"voice": "nova", "format": "wav"},
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": base64.b64encode(wav_file(speak(QUESTION))).decode(),
                            "format": "wav",
                        },
                    }
                ],
            }
        ],
        max_completion_tokens=16,
    )
    (body,) = prompts()
    assert body["model"] == "up-chat"  # the upstream's own name for its model
    assert word_error_rate(QUESTION, last_user_text(body)) <= MAX_WER
    audio = response.choices[0].message.audio
    assert audio.transcript.strip() == FAULT_REPLY
    assert base64.b64decode(audio.data)[:4] == b"RIFF"
    assert response.usage.prompt_tokens_details.audio_tokens > 0
    assert response.usage.completion_tokens_details.audio_tokens > 0
    record = UsageRecord.objects.get(api_key=live_key.api_key)
    assert record.model == "local/audio-chat"
    assert record.cost > 0


def test_client_leaving_mid_stream_is_billed_once_for_what_was_made(arouter_server, live_key):
    import time

    import httpx

    body = {
        "model": MODEL,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "pcm16"},
        "stream": True,
        "max_completion_tokens": 200,
        "temperature": 0,
        # The base model keeps counting at temperature 0: a full reply would use all 200.
        "messages": [
            {
                "role": "user",
                "content": "List the numbers from 1 to 100, separated by commas: 1, 2, 3, 4, 5,",
            }
        ],
    }
    with (
        httpx.Client(timeout=120) as client,
        client.stream(
            "POST",
            f"{arouter_server.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {live_key.raw}"},
        ) as response,
    ):
        for line in response.iter_lines():
            if '"data":"' in line:  # the first audio chunk: leave now
                break
    deadline = time.monotonic() + 60
    while not UsageRecord.objects.finished().filter(api_key=live_key.api_key).exists():
        assert time.monotonic() < deadline, "no usage record after the client left"
        time.sleep(0.2)
    time.sleep(1)
    (record,) = UsageRecord.objects.filter(api_key=live_key.api_key)
    assert record.audio_tokens_out > 0
    assert record.text_tokens_out < 200
    assert record.cost > 0


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    from tests.peer_arouter import PeerARouter

    server = PeerARouter(tmp_path_factory.mktemp("peer-arouter")).start()
    yield server
    server.stop()


def test_upstream_audio_model_gets_the_body_whole(openai_client, peer, tmp_path, monkeypatch):
    """An upstream that hears and speaks itself (here the peer's audio chat) is relayed to."""
    from django.conf import settings

    from tests.upstream_helpers import catalog_from, model_table, upstream_table

    monkeypatch.setenv("ARCHAT_PEER_KEY", peer.key)
    text = settings.AROUTER_CATALOG.read_text() + "\n"
    text += upstream_table("peer", peer.url, "ARCHAT_PEER_KEY")
    text += model_table(
        "peer/audio",
        "chat",
        "peer",
        "local/audio-chat",
        input_modalities=["text", "audio"],
        output_modalities=["text", "audio"],
        price={"per_million_audio_input_tokens": 40, "per_million_audio_output_tokens": 80},
    )
    question = {
        "type": "input_audio",
        "input_audio": {
            "data": base64.b64encode(wav_file(speak(QUESTION))).decode(),
            "format": "wav",
        },
    }
    with catalog_from(tmp_path / "catalog.toml", text):
        response = openai_client.chat.completions.create(
            model="peer/audio",
            modalities=["text", "audio"],
            audio={"voice": "nova", "format": "mp3"},
            messages=[{"role": "user", "content": [question]}],
            max_completion_tokens=12,
        )
        stream = openai_client.chat.completions.create(
            model="peer/audio",
            modalities=["text", "audio"],
            audio={"voice": "nova", "format": "pcm16"},
            messages=[{"role": "user", "content": "Tell me a short joke."}],
            max_completion_tokens=12,
            stream=True,
        )
        chunks = list(stream)
    assert response.model == "peer/audio"
    audio = base64.b64decode(response.choices[0].message.audio.data)
    assert decoded_seconds(audio) > 0.3
    assert response.usage.prompt_tokens_details.audio_tokens > 0
    assert all(chunk.model == "peer/audio" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)  # not asked for, not forwarded
    pcm = b"".join(
        base64.b64decode(c.choices[0].delta.audio.model_dump().get("data") or "")
        for c in chunks
        if c.choices and c.choices[0].delta.audio
    )
    # A quarter second or more of 24 kHz pcm16: the reply's length varies (sampled, 12 tokens).
    assert len(pcm) > 12_000
    records = UsageRecord.objects.filter(model="peer/audio").order_by("id")
    assert [r.status_code for r in records] == [200, 200]
    assert records[0].audio_tokens_in == response.usage.prompt_tokens_details.audio_tokens
    assert records[1].audio_tokens_out > 0  # read from the usage chunk we asked for
    assert all(r.cost > 0 for r in records)
