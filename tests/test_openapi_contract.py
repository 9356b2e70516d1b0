"""Our real responses against OpenAI's published schemas (tests/contract/), and code
written for OpenAI working with only base_url changed: OpenAI's own model names
(`tts-1`, `gpt-4o-audio-preview`, `gpt-realtime`) are aliases of the local engines.

Transcriptions, chat text and /v1/models are checked in their own test files; this one
holds the checker's own rules, errors, speech, audio chat and the realtime name.
"""

import base64
import io
import json
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from channels.testing.websocket import WebsocketCommunicator

from arouter.asgi import application
from gateway.audio.encode import wav_file
from tests.chat_speech import speak
from tests.openai_contract import DOCUMENT, assert_matches, assert_stream_matches, problems
from tests.streaming import body_of
from tests.upstream_helpers import catalog_from, model_table, upstream_table
from usage.models import UsageRecord

CHUNK = "CreateChatCompletionStreamResponse"


def chunk(**fields) -> dict:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return {**base, **fields}


# --- the checker ------------------------------------------------------------------------


def test_nullable_is_read_as_or_null():
    # The document says `nullable: true` (OpenAPI 3.0) for a chunk's usage, logprobs and
    # finish_reason; JSON Schema alone would refuse the nulls OpenAI itself sends.
    body = chunk(
        usage=None, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}]
    )
    assert problems(CHUNK, body) == []
    assert problems(CHUNK, {**body, "usage": "none"}) != []


def test_a_null_system_fingerprint_breaks_the_contract():
    found = problems(CHUNK, chunk(choices=[], system_fingerprint=None))
    assert found == ['/system_fingerprint: null is not of type "string"']


def test_undeclared_fields_fail_unless_listed():
    model = {"id": "m", "object": "model", "created": 1, "owned_by": "arouter", "route": {}}
    assert problems("Model", model) == []  # the published schema allows other fields
    with pytest.raises(AssertionError, match="'route' was unexpected"):
        assert_matches("Model", model)
    assert_matches("Model", model, extras=["route"])


USAGE_SCHEMAS = {
    # (schema, where its usage object is): our `cost` goes inside each.
    "TranscriptTextUsageDuration": "CreateTranscriptionResponseJson / VerboseJson .usage",
    "TranscriptTextUsageTokens": "TranscriptTextDoneEvent.usage",
    "SpeechAudioDoneEvent": "properties.usage",
    "CompletionUsage": "CreateChatCompletionResponse / StreamResponse .usage",
}


@pytest.mark.parametrize("name", sorted(USAGE_SCHEMAS))
def test_every_usage_object_of_the_spec_allows_our_cost(name):
    # `cost` is ours: allowed only because no usage schema closes its properties. Were
    # OpenAI to add `additionalProperties: false`, this is where it would show.
    schema = json.loads(DOCUMENT.read_text())["components"]["schemas"][name]
    usage = schema["properties"]["usage"] if name == "SpeechAudioDoneEvent" else schema
    assert "additionalProperties" not in usage
    assert "unevaluatedProperties" not in usage


# --- errors -----------------------------------------------------------------------------


def test_errors_are_openais_error_response(api, client):
    for response in (
        api.post("/v1/audio/transcriptions", data={"model": "whisper-1"}),  # 400, no file
        api.get("/v1/models/nobody/nothing"),  # 404
        client.get("/v1/models"),  # 401, no key
    ):
        assert response.status_code in (400, 401, 404)
        assert_matches("ErrorResponse", response.json())


# --- speech -----------------------------------------------------------------------------


def sse_events(text: str) -> list:
    """The `data:` payloads of an SSE body, decoded (a chat stream's `[DONE]` as is)."""
    blocks = [block for block in text.split("\n\n") if block.strip()]
    assert all(block.startswith("data: ") for block in blocks), blocks
    payloads = [block.removeprefix("data: ") for block in blocks]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


@pytest.mark.engines
def test_tts_1_speaks_through_the_sdk_as_for_openai(openai_client, live_key):
    speech = openai_client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello from the gateway.", response_format="wav"
    )
    with wave.open(io.BytesIO(speech.content)) as audio:
        seconds = audio.getnframes() / audio.getframerate()
    assert seconds > 0.5
    row = UsageRecord.objects.get(api_key=live_key.api_key)
    assert (row.model, row.provider, row.status_code) == ("tts-1", "piper", 200)
    assert float(row.cost) == pytest.approx(len("Hello from the gateway.") * 15 / 1_000_000)


@pytest.mark.engines
def test_speech_sse_events_match_the_spec(openai_client):
    with openai_client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="nova",
        input="One sentence. And another one.",
        response_format="pcm",
        stream_format="sse",
    ) as response:
        events = sse_events(response.text())
    assert_stream_matches("CreateSpeechResponseStreamEvent", events, extras=["usage.cost"])
    *deltas, done = events
    assert deltas
    assert all(e["type"] == "speech.audio.delta" for e in deltas)
    assert_matches("SpeechAudioDoneEvent", done, extras=["usage.cost"])


# --- audio chat -------------------------------------------------------------------------

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def question_wav() -> str:
    return base64.b64encode(wav_file(speak(QUESTION))).decode("ascii")


def audio_question(question_wav: str) -> list[dict]:
    part = {"type": "input_audio", "input_audio": {"data": question_wav, "format": "wav"}}
    return [{"role": "user", "content": [part]}]


@pytest.mark.engines
def test_gpt_4o_audio_preview_hears_and_speaks_in_the_specs_shape(
    openai_client, question_wav, live_key
):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o-audio-preview",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        messages=audio_question(question_wav),
        max_completion_tokens=12,
    )
    body = json.loads(raw.text)
    assert_matches("CreateChatCompletionResponse", body, extras=["usage.cost"])
    assert "system_fingerprint" not in body
    completion = raw.parse()
    assert completion.model == "gpt-4o-audio-preview"
    audio = completion.choices[0].message.audio
    assert audio.transcript
    assert base64.b64decode(audio.data)[:4] == b"RIFF"
    assert completion.usage.prompt_tokens_details.audio_tokens > 0
    row = UsageRecord.objects.get(api_key=live_key.api_key)
    assert (row.model, row.provider, row.status_code) == ("gpt-4o-audio-preview", "cascade", 200)


@pytest.mark.engines
def test_streamed_audio_chunks_match_the_spec(arouter_server, live_key, question_wav):
    body = {
        "model": "gpt-4o-audio-preview",
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "pcm16"},
        "messages": audio_question(question_wav),
        "max_completion_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = httpx.post(
        f"{arouter_server.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {live_key.raw}"},
        timeout=180,
    )
    assert response.status_code == 200, response.text
    *chunks, done = sse_events(response.text)
    assert done == "[DONE]"
    # delta.audio is what OpenAI streams for audio, though its chunk schema omits it.
    assert_stream_matches(CHUNK, chunks, extras=["usage.cost", "choices.*.delta.audio"])
    assert not any("system_fingerprint" in c for c in chunks)
    assert any(c["choices"] and "audio" in c["choices"][0]["delta"] for c in chunks)


class NullFingerprintUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat server that sends `system_fingerprint: null`, as vLLM and
    other servers (and ARouter before this fix) do."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        base = {"id": "chatcmpl-up", "created": 1, "model": "up", "system_fingerprint": None}
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        message = {"role": "assistant", "content": "Hi.", "refusal": None}
        if request.get("stream"):
            chunk = {**base, "object": "chat.completion.chunk"}
            chunks = [
                {**chunk, "choices": [{"index": 0, "delta": message, "finish_reason": None}]},
                {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {**chunk, "choices": [], "usage": usage},
            ]
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._send(body.encode(), "text/event-stream")
            return
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        answer = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        self._send(json.dumps(answer).encode(), "application/json")

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet test output
        pass


@pytest.fixture
def null_fingerprint_upstream(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), NullFingerprintUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    text = upstream_table("nullfp", f"http://127.0.0.1:{server.server_port}/v1")
    text += model_table("nullfp/audio", "chat", "nullfp", "up", input_modalities=["text", "audio"],
                        output_modalities=["text", "audio"])  # fmt: skip
    with catalog_from(tmp_path / "catalog.toml", text):
        yield
    server.shutdown()
    server.server_close()


def test_relayed_answers_drop_an_upstreams_null_fingerprint(api, null_fingerprint_upstream):
    body = {
        "model": "nullfp/audio",
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "messages": [{"role": "user", "content": "Hi"}],
    }
    answer = api.post("/v1/chat/completions", data=body, content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert "system_fingerprint" not in answer.json()
    assert_matches("CreateChatCompletionResponse", answer.json(), extras=["usage.cost"])
    streamed = api.post(
        "/v1/chat/completions",
        data={**body, "audio": {"voice": "alloy", "format": "pcm16"}, "stream": True},
        content_type="application/json",
    )
    *chunks, done = sse_events(body_of(streamed).decode())
    assert done == "[DONE]"
    assert chunks
    assert not any("system_fingerprint" in c for c in chunks)
    assert_stream_matches(CHUNK, chunks)


# --- realtime ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_gpt_realtime_opens_a_session_on_the_local_cascade(api_key):
    comm = WebsocketCommunicator(
        application,
        "/v1/realtime?model=gpt-realtime",
        headers=[(b"authorization", f"Bearer {api_key.raw}".encode())],
    )
    connected, _ = await comm.connect(timeout=60)
    assert connected
    created = json.loads(await comm.receive_from(timeout=60))
    assert created["type"] == "session.created", created
    assert created["session"]["model"] == "gpt-realtime"
    await comm.disconnect()
