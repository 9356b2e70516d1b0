"""Azure OpenAI's data-plane inference API on loopback, written from Azure's reference.

References:
- https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference (2024-10-21 GA:
  deployments routes, `api-key` header, audio transcriptions / translations / speech)
- https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference-preview-latest and
  https://learn.microsoft.com/en-us/azure/ai-foundry/openai/api-version-lifecycle (the v1
  API: `/openai/v1/...`, the deployment as `model`, `api-version` optional or `preview`)
- https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter and
  .../concepts/content-filter-annotations, .../concepts/content-streaming (the 400
  `content_filter` error with `innererror.content_filter_result`, `prompt_filter_results`
  and `content_filter_results` on answers, the first streamed chunk with no choices, the
  asynchronous filter's offset-only chunks, `finish_reason: "content_filter"`)
- https://learn.microsoft.com/en-us/azure/ai-foundry/openai/how-to/audio-completions-quickstart
  (gpt-4o-audio-preview: `input_audio` parts, `modalities`, `audio` replies)

What it checks, as Azure does: the `api-key` header (else 401 with Azure's body), the
route and its `api-version` (a missing or unknown one is 404 "Resource not found"), the
deployment (unknown: 404 `DeploymentNotFound`; one asked for what its model cannot do:
400 `OperationNotSupported`), each body's fields. Deployments are named for their model
(`whisper`, `gpt-4o-transcribe`, `tts`, `gpt-4o-mini-tts`, `gpt-4o-audio-preview`).
A prompt containing "forbidden" is stopped by the content filter (400), one containing
"unsafe-output" has its completion cut (`finish_reason: "content_filter"`).
`script(status, ...)` makes the next requests fail with Azure's bodies for those statuses
(429 with `retry-after`, 500, 503).
"""

import base64
import io
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable

import av
import numpy as np

from gateway.audio.encode import CONTENT_TYPES, encode_all, wav_file
from tests.vendor_fakes.loopback import LoopbackServer, Request, Response, json_response

API_KEY = "azure-test-key-0123456789abcdef"
DATED_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
V1_VERSIONS = (None, "preview", "latest", "v1")
TRANSCRIBERS = {"whisper": ("json", "text", "srt", "verbose_json", "vtt"),
                "gpt-4o-transcribe": ("json", "text")}  # fmt: skip
SPEAKERS = {"tts": ("alloy", "echo", "fable", "onyx", "nova", "shimmer"),
            "gpt-4o-mini-tts": ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova",
                                "onyx", "sage", "shimmer", "verse", "marin", "cedar")}  # fmt: skip
CHATTERS = ("gpt-4o-audio-preview", "gpt-4o-mini")
SPEECH_CHUNK = 4800  # bytes per streamed piece of speech
SECONDS_PER_CHARACTER = 0.05
SAFE = {"filtered": False, "severity": "safe"}
FILTER_RESULTS = {c: SAFE for c in ("hate", "self_harm", "sexual", "violence")}
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": FILTER_RESULTS}]
FILTERED_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content "
    "management policy. Please modify your prompt and retry. To learn more about our "
    "content filtering policies please read our documentation: "
    "https://go.microsoft.com/fwlink/?linkid=2198766"
)


def azure_error(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def scripted_failure(status: int) -> Response:
    if status == 429:
        message = (
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
            "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. "
            "Please retry after 1 second."
        )
        return json_response(429, azure_error("429", message), {"retry-after": "1"})
    if status == 503:
        return json_response(503, azure_error("ServiceUnavailable", "The service is busy."))
    return json_response(
        status, azure_error("InternalServerError", "The server had an error while processing.")
    )


def audio_seconds(content: bytes) -> float:
    samples, rate = 0, 16000
    with av.open(io.BytesIO(content)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate


def tone(seconds: float, rate: int = 24000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 330 * t) * 32767).astype(np.int16)


class FakeAzure:
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.failures: list[int] = []
        self.server = LoopbackServer(self.handle)

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "FakeAzure":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def script(self, *statuses: int) -> None:
        self.failures.extend(statuses)

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()

    # --- routing --------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if request.headers.get("api-key") != self.api_key:
            return json_response(401, azure_error("401", (
                "Access denied due to invalid subscription key or wrong API endpoint. Make "
                "sure to provide a valid key for an active subscription and use a correct "
                "regional API endpoint for your resource.")))  # fmt: skip
        route = self._route(request)
        if route is None:
            return json_response(404, azure_error("404", "Resource not found"))
        deployment, operation = route
        if self.failures:
            return scripted_failure(self.failures.pop(0))
        if deployment not in (*TRANSCRIBERS, *SPEAKERS, *CHATTERS):
            return json_response(404, azure_error("DeploymentNotFound", (
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try "
                "again.")))  # fmt: skip
        if operation in ("audio/transcriptions", "audio/translations"):
            return self._transcription(request, deployment, operation)
        if operation == "audio/speech":
            return self._speech(request, deployment)
        return self._chat(request, deployment)

    def _route(self, request: Request) -> tuple[str, str] | None:
        """(deployment, operation) of a deployments or v1 route, or None: Azure's 404."""
        operations = "(audio/transcriptions|audio/translations|audio/speech|chat/completions)"
        version = request.param("api-version")
        dated = re.fullmatch(rf"/openai/deployments/([^/]+)/{operations}", request.path)
        if dated and version and DATED_VERSION.match(version):
            return dated.group(1), dated.group(2)
        v1 = re.fullmatch(rf"/openai/v1/{operations}", request.path)
        if v1 and version in V1_VERSIONS:
            model = self._model_of(request)
            return (model, v1.group(1)) if model else None
        return None

    def _model_of(self, request: Request) -> str | None:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            return (request.form()[0].get("model") or [None])[0]
        try:
            return request.json().get("model")
        except ValueError:
            return None

    def unsupported(self, operation: str, deployment: str) -> Response:
        return json_response(400, azure_error("OperationNotSupported", (
            f"The {operation} operation does not work with the specified model, {deployment}. "
            "Please choose different model and try again. You can learn more about which "
            "models can be used with each operation here: https://go.microsoft.com/fwlink/"
            "?linkid=2197993.")))  # fmt: skip

    # --- speech to text -------------------------------------------------------------------

    def _transcription(self, request: Request, deployment: str, operation: str) -> Response:
        if deployment not in TRANSCRIBERS:
            return self.unsupported("audioTranscription", deployment)
        fields, files = request.form()
        fmt = (fields.get("response_format") or ["json"])[0]
        if fmt not in TRANSCRIBERS[deployment]:
            return json_response(400, {"error": {
                "message": f"response_format '{fmt}' is not compatible with model "
                           f"'{deployment}'. Use one of {list(TRANSCRIBERS[deployment])}.",
                "type": "invalid_request_error", "param": "response_format",
                "code": "unsupported_value"}})  # fmt: skip
        upload = files.get("file")
        if upload is None:
            return json_response(400, azure_error("invalidPayload", "Missing file."))
        try:
            seconds = audio_seconds(upload.content)
        except av.FFmpegError:
            return json_response(400, {"error": {
                "message": "Invalid file format.", "type": "invalid_request_error",
                "param": None, "code": "invalid_value"}})  # fmt: skip
        task = "translate" if operation == "audio/translations" else "transcribe"
        granularities = fields.get("timestamp_granularities[]", [])
        language = "english" if task == "translate" else (fields.get("language") or ["en"])[0]
        return self._transcript(seconds, fmt, task, granularities, language, deployment)

    def _transcript(self, seconds, fmt, task, granularities, language, deployment) -> Response:
        count = max(math.ceil(seconds - 0.05), 1)
        segments = [{"id": i, "seek": 0, "start": float(i), "end": min(i + 1.0, seconds),
                     "text": f" azure{i}", "tokens": [50364, 1000 + i], "temperature": 0.0,
                     "avg_logprob": -0.2, "compression_ratio": 0.9, "no_speech_prob": 0.01}
                    for i in range(count)]  # fmt: skip
        text = "".join(s["text"] for s in segments).strip()
        if fmt == "text":
            return Response(200, (text + "\n").encode(), "text/plain; charset=utf-8")
        if fmt == "json":
            body: dict = {"text": text}
            if deployment != "whisper":  # gpt-4o-transcribe bills tokens
                body["usage"] = {"type": "tokens", "input_tokens": math.ceil(seconds * 10),
                                 "output_tokens": count, "total_tokens": 0}  # fmt: skip
            return json_response(200, body)
        if fmt != "verbose_json":  # srt / vtt: not asked for by the gateway
            return Response(200, text.encode(), "text/plain; charset=utf-8")
        body = {"task": task, "language": language, "duration": seconds, "text": text,
                "segments": segments}  # fmt: skip
        if "word" in granularities:
            body["words"] = [{"word": s["text"].strip(), "start": s["start"] + 0.1,
                              "end": s["end"] - 0.1} for s in segments]  # fmt: skip
        return json_response(200, body)

    # --- text to speech -------------------------------------------------------------------

    def _speech(self, request: Request, deployment: str) -> Response:
        if deployment not in SPEAKERS:
            return self.unsupported("audioSpeech", deployment)
        body = request.json()
        fmt = body.get("response_format", "mp3")
        voice = body.get("voice")
        if voice not in SPEAKERS[deployment]:
            return json_response(400, {"error": {
                "message": f"Invalid value for 'voice': '{voice}'.",
                "type": "invalid_request_error", "param": "voice",
                "code": "invalid_value"}})  # fmt: skip
        if fmt not in CONTENT_TYPES or not body.get("input"):
            return json_response(400, {"error": {
                "message": "Invalid input or response_format.",
                "type": "invalid_request_error", "param": "response_format",
                "code": "invalid_value"}})  # fmt: skip
        pcm = tone(len(body["input"]) * SECONDS_PER_CHARACTER / float(body.get("speed", 1.0)))
        audio = pcm.tobytes() if fmt == "pcm" else encode_all(pcm, fmt, 24000)
        return Response(200, self._pieces(audio), CONTENT_TYPES[fmt])

    async def _pieces(self, audio: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(audio), SPEECH_CHUNK):
            yield audio[start : start + SPEECH_CHUNK]

    # --- chat -----------------------------------------------------------------------------

    def _chat(self, request: Request, deployment: str) -> Response:
        if deployment not in CHATTERS:
            return self.unsupported("chatCompletion", deployment)
        body = request.json()
        texts, heard = [], 0.0
        for message in body.get("messages") or []:
            content = message.get("content")
            for part in [content] if isinstance(content, str) else content or []:
                if isinstance(part, str):
                    texts.append(part)
                elif part.get("type") == "text":
                    texts.append(part["text"])
                elif part.get("type") == "input_audio":
                    heard += audio_seconds(base64.b64decode(part["input_audio"]["data"]))
        if any("forbidden" in text for text in texts):
            return json_response(400, azure_error("content_filter", FILTERED_MESSAGE,
                param="prompt", status=400, innererror={
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": {**FILTER_RESULTS,
                                              "violence": {"filtered": True, "severity": "high"}},
                }))  # fmt: skip
        cut = any("unsafe-output" in text for text in texts)
        reply = f"I heard {heard:.1f} seconds of audio." if heard else "Hello from Azure."
        if cut:
            reply = "Hello"
        prompt_text = math.ceil(sum(len(t) for t in texts) / 4) + 3
        audio_in = math.ceil(heard * 10)
        speaking = "audio" in (body.get("modalities") or [])
        usage = {"prompt_tokens": prompt_text + audio_in,
                 "completion_tokens": math.ceil(len(reply) / 4) + (20 if speaking else 0),
                 "prompt_tokens_details": {"audio_tokens": audio_in, "cached_tokens": 0},
                 "completion_tokens_details": {"audio_tokens": 20 if speaking else 0,
                                               "reasoning_tokens": 0}}  # fmt: skip
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        answer = Answer(body, reply, "content_filter" if cut else "stop", usage, speaking)
        if body.get("stream"):
            return Response(200, answer.events(), "text/event-stream; charset=utf-8")
        return json_response(200, answer.whole())


class Answer:
    """One chat answer as Azure shapes it, whole or as chunks, with its filter results."""

    def __init__(self, body: dict, text: str, finish: str, usage: dict, speaking: bool):
        self.body, self.text, self.finish, self.usage = body, text, finish, usage
        self.speaking = speaking
        self.id = f"chatcmpl-az{int(time.time() * 1000)}"
        self.created = int(time.time())

    def _audio(self) -> dict:
        pcm = tone(1.0)
        fmt = (self.body.get("audio") or {}).get("format", "wav")
        data = pcm.tobytes() if fmt == "pcm16" else wav_file(pcm)
        return {"id": "audio_az123", "data": base64.b64encode(data).decode(),
                "expires_at": self.created + 3600, "transcript": self.text}  # fmt: skip

    def whole(self) -> dict:
        message = {"role": "assistant", "content": None if self.speaking else self.text,
                   "refusal": None, "annotations": []}  # fmt: skip
        if self.speaking:
            message["audio"] = self._audio()
        return {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": "gpt-4o-audio-preview-2024-12-17", "system_fingerprint": "fp_az01",
            "prompt_filter_results": PROMPT_FILTER_RESULTS,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": self.finish,
                         "content_filter_results": FILTER_RESULTS}],
            "usage": self.usage,
        }  # fmt: skip

    def _chunk(self, delta: dict | None, finish: str | None = None, **extra) -> bytes:
        choice = {"index": 0, "finish_reason": finish, "logprobs": None, **extra}
        if delta is not None:
            choice["delta"] = delta
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": "gpt-4o-audio-preview-2024-12-17", "system_fingerprint": "fp_az01",
                 "choices": [choice]}  # fmt: skip
        return f"data: {json.dumps(chunk)}\n\n".encode()

    async def events(self) -> AsyncIterator[bytes]:
        prompt_filter = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                         "prompt_filter_results": PROMPT_FILTER_RESULTS}  # fmt: skip
        yield f"data: {json.dumps(prompt_filter)}\n\n".encode()
        yield self._chunk({"role": "assistant", "content": "", "refusal": None})
        if self.speaking:
            yield self._chunk({"audio": {"id": "audio_az123", "transcript": self.text}})
            data = base64.b64encode(tone(0.5).tobytes()).decode()
            yield self._chunk({"audio": {"data": data}})
        else:
            for word in re.findall(r"\S+\s*", self.text):
                yield self._chunk({"content": word}, content_filter_results=FILTER_RESULTS)
        # The asynchronous filter's verdict on what was sent: offsets, no delta.
        yield self._chunk(None, content_filter_results=FILTER_RESULTS,
                          content_filter_offsets={"check_offset": 0, "start_offset": 0,
                                                  "end_offset": len(self.text)})  # fmt: skip
        yield self._chunk({}, self.finish)
        if (self.body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                     "model": "gpt-4o-audio-preview-2024-12-17", "choices": [],
                     "usage": self.usage}  # fmt: skip
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"


def start_fake() -> tuple[str, Callable[[], None]]:
    """A running fake Azure resource: (its base_url, a function that stops it)."""
    fake = FakeAzure().start()
    return fake.url, fake.stop
