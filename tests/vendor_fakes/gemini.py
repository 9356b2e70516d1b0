"""The Gemini API (generativelanguage, v1beta) on loopback, written from Google's reference.

References:
- https://ai.google.dev/api/generate-content (models.generateContent and
  models.streamGenerateContent with `alt=sse`; GenerateContentRequest, GenerationConfig,
  GenerateContentResponse, Candidate.finishReason, PromptFeedback.blockReason,
  UsageMetadata with promptTokensDetails by modality and thoughtsTokenCount)
- https://ai.google.dev/gemini-api/docs/audio (inline audio parts, the MIME types Gemini
  reads: WAV, MP3, AIFF, AAC, OGG, FLAC; 32 tokens per second of audio)
- https://ai.google.dev/gemini-api/docs/speech-generation (TTS models: responseModalities
  ["AUDIO"], speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName, the 30 voices,
  base64 pcm16 at 24 kHz as `audio/L16;codec=pcm;rate=24000`)
- https://ai.google.dev/gemini-api/docs/troubleshooting and https://ai.google.dev/api
  (`x-goog-api-key`; errors as {"error": {"code", "message", "status", "details"}}: 400
  INVALID_ARGUMENT, a bad key as 400 with reason API_KEY_INVALID, no key 403
  PERMISSION_DENIED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED with RetryInfo, 500 INTERNAL,
  503 UNAVAILABLE)

What it checks, as Gemini does: the key, the route and method, unknown request and
generationConfig fields (Gemini's "Unknown name" 400), roles, parts (exactly one of text or
inline data), inline MIME types and base64, the response modalities and voice of a TTS
model. Chat models answer "I heard N seconds of audio." (or "Hello from Gemini."), with
" (as instructed)" when a systemInstruction came, cut at maxOutputTokens (MAX_TOKENS) or a
stop sequence. Prompt text "blocked-prompt" is blocked (promptFeedback, no candidates),
"unsafe-output" ends in finishReason SAFETY, "cut-stream" closes a stream before its end.
`script(status, ...)` makes the next requests fail with Gemini's bodies.
"""

import asyncio
import base64
import binascii
import io
import json
import math
import re
from collections.abc import AsyncIterator, Callable

import av
import numpy as np

from tests.vendor_fakes.loopback import LoopbackServer, Request, Response, json_response

API_KEY = "AIzaSy-gemini-test-key-0123456789"
CHAT_MODELS = ("gemini-2.5-flash", "gemini-2.0-flash")
TTS_MODELS = ("gemini-2.5-flash-preview-tts", "gemini-2.5-pro-preview-tts")
VOICES = (
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe",
    "Autonoe", "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib",
    "Rasalgethi", "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima",
    "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat",
)  # fmt: skip
AUDIO_MIME_TYPES = ("audio/wav", "audio/mp3", "audio/mpeg", "audio/aiff", "audio/aac",
                    "audio/ogg", "audio/flac")  # fmt: skip
REQUEST_FIELDS = {"contents", "systemInstruction", "system_instruction", "generationConfig",
                  "generation_config", "safetySettings", "safety_settings", "tools",
                  "toolConfig", "cachedContent"}  # fmt: skip
CONFIG_FIELDS = {"stopSequences", "responseMimeType", "responseSchema", "responseModalities",
                 "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
                 "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                 "speechConfig", "thinkingConfig", "mediaResolution"}  # fmt: skip
AUDIO_TOKENS_PER_SECOND = 32
TTS_TOKENS_PER_SECOND = 25
SECONDS_PER_CHARACTER = 0.05
TTS_PIECE_SECONDS = 0.25
THOUGHTS = 7  # thinking tokens gemini-2.5-flash reports unless its budget is 0
PCM_MIME = "audio/L16;codec=pcm;rate=24000"


class Refused(Exception):
    def __init__(self, status: int, message: str, details: list | None = None) -> None:
        self.status, self.message, self.details = status, message, details


STATUSES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


def error_response(status: int, message: str, details: list | None = None) -> Response:
    error = {"code": status, "message": message, "status": STATUSES[status]}
    if details:
        error["details"] = details
    return json_response(status, {"error": error})


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
QUOTA = "You exceeded your current quota, please check your plan and billing details."
INTERNAL = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)


def scripted_failure(status: int) -> Response:
    if status == 429:
        return error_response(429, QUOTA, [RETRY_INFO])
    if status == 503:
        return error_response(503, "The model is overloaded. Please try again later.")
    return error_response(500, INTERNAL)


def audio_seconds(content: bytes) -> float:
    samples, rate = 0, 16000
    with av.open(io.BytesIO(content)) as container:
        for frame in container.decode(audio=0):
            samples, rate = samples + frame.samples, frame.sample_rate
    return samples / rate


def tone(seconds: float, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class Prompt:
    """What a request asked for, read and checked as Gemini reads it."""

    def __init__(self, body: dict) -> None:
        if not isinstance(body, dict):
            raise Refused(400, "Invalid JSON payload received.")
        for name in body:
            if name not in REQUEST_FIELDS:
                raise Refused(400, f'Invalid JSON payload received. Unknown name "{name}": '
                                   "Cannot find field.")  # fmt: skip
        self.config = body.get("generationConfig") or body.get("generation_config") or {}
        for name in self.config:
            if name not in CONFIG_FIELDS:
                raise Refused(400, f'Invalid JSON payload received. Unknown name "{name}" at '
                                   "'generation_config': Cannot find field.")  # fmt: skip
        contents = body.get("contents")
        if not contents:
            raise Refused(400, "* GenerateContentRequest.contents: contents is not specified\n")
        self.texts: list[str] = []
        self.audio_seconds = 0.0
        for n, content in enumerate(contents):
            if content.get("role", "user") not in ("user", "model"):
                raise Refused(400, f"Please use a valid role: user, model.")  # noqa: F541
            for m, part in enumerate(content.get("parts") or []):
                self._part(part, f"contents[{n}].parts[{m}]")
        system = body.get("systemInstruction") or body.get("system_instruction")
        self.instructed = bool(system)
        for part in (system or {}).get("parts") or []:
            if "text" not in part:
                raise Refused(400, "System instruction must be text.")
            self.texts.append(part["text"])

    def _part(self, part: dict, where: str) -> None:
        kinds = [k for k in ("text", "inline_data", "inlineData") if k in part]
        if len(kinds) != 1:
            raise Refused(400, f"* GenerateContentRequest.{where}: part must have one "
                               "initialized field")  # fmt: skip
        if kinds[0] == "text":
            self.texts.append(part["text"])
            return
        inline = part[kinds[0]]
        mime = inline.get("mime_type") or inline.get("mimeType")
        if mime not in AUDIO_MIME_TYPES:
            raise Refused(400, f"Unsupported MIME type: {mime}")
        try:
            data = base64.b64decode(inline.get("data", ""), validate=True)
        except binascii.Error:
            raise Refused(400, f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), "
                               "Base64 decoding failed") from None  # fmt: skip
        try:
            self.audio_seconds += audio_seconds(data)
        except av.FFmpegError:
            raise Refused(400, "Request contains an invalid argument.") from None

    def mentions(self, word: str) -> bool:
        return any(word in text for text in self.texts)

    def usage(self, candidates: int, thoughts: int = 0, modality: str = "TEXT") -> dict:
        text = sum(text_tokens(t) for t in self.texts)
        audio = math.ceil(self.audio_seconds * AUDIO_TOKENS_PER_SECOND)
        details = [{"modality": "TEXT", "tokenCount": text}]
        if audio:
            details.append({"modality": "AUDIO", "tokenCount": audio})
        usage = {"promptTokenCount": text + audio, "promptTokensDetails": details,
                 "candidatesTokenCount": candidates,
                 "totalTokenCount": text + audio + candidates + thoughts}  # fmt: skip
        if candidates:
            usage["candidatesTokensDetails"] = [{"modality": modality, "tokenCount": candidates}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage


class FakeGemini:
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.failures: list[int] = []
        self.server = LoopbackServer(self.handle)
        self.served = 0

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "FakeGemini":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def script(self, *statuses: int) -> None:
        self.failures.extend(statuses)

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()

    async def handle(self, request: Request) -> Response:
        key = request.headers.get("x-goog-api-key")
        if key is None:
            return error_response(403, (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to "
                "call this API."))  # fmt: skip
        if key != self.api_key:
            return error_response(400, "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com",
                 "metadata": {"service": "generativelanguage.googleapis.com"}}])  # fmt: skip
        route = re.fullmatch(r"/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)",
                             request.path)  # fmt: skip
        if route is None or request.method != "POST":
            return json_response(404, "Not Found")
        model, method = route.groups()
        if model not in (*CHAT_MODELS, *TTS_MODELS):
            return error_response(404, (
                f"models/{model} is not found for API version v1beta, or is not supported for "
                f"{method}. Call ListModels to see the list of available models and their "
                "supported methods."))  # fmt: skip
        if self.failures:
            return scripted_failure(self.failures.pop(0))
        try:
            prompt = Prompt(request.json())
            answers = self._tts(prompt) if model in TTS_MODELS else self._chat(prompt, model)
        except Refused as refused:
            return error_response(refused.status, refused.message, refused.details)
        except ValueError:
            return error_response(400, "Invalid JSON payload received.")
        self.served += 1
        for answer in answers:
            answer.update({"modelVersion": model, "responseId": f"gemResp{self.served:04d}"})
        if method == "generateContent":
            return json_response(200, merged(answers))
        if request.param("alt") == "sse":
            cut = prompt.mentions("cut-stream")
            return Response(200, self._events(answers, cut), "text/event-stream")
        return json_response(200, answers)

    async def _events(self, answers: list[dict], cut: bool) -> AsyncIterator[bytes]:
        for n, answer in enumerate(answers):
            if cut and n == 2:
                return  # the connection ends cleanly, before the last answer
            yield f"data: {json.dumps(answer)}\r\n\r\n".encode()
            await asyncio.sleep(0.005)

    # --- chat -----------------------------------------------------------------------------

    def _chat(self, prompt: Prompt, model: str) -> list[dict]:
        if "AUDIO" in (prompt.config.get("responseModalities") or []):
            raise Refused(400, "The requested combination of response modalities is not "
                               "supported by the model.")  # fmt: skip
        if prompt.mentions("blocked-prompt"):
            return [{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                "usageMetadata": prompt.usage(0)}]  # fmt: skip
        reply = self._reply(prompt)
        words = re.findall(r"\S+\s*", reply)
        finish = "SAFETY" if prompt.mentions("unsafe-output") else "STOP"
        limit = prompt.config.get("maxOutputTokens")
        if limit is not None and sum(text_tokens(w) for w in words) > limit:
            while words and sum(text_tokens(w) for w in words) > limit:
                words.pop()
            finish = "MAX_TOKENS"
        budget = (prompt.config.get("thinkingConfig") or {}).get("thinkingBudget")
        thoughts = THOUGHTS if model == "gemini-2.5-flash" and budget != 0 else 0
        answers, spent = [], 0
        for n, word in enumerate(words):
            spent += text_tokens(word)
            candidate = {"content": {"parts": [{"text": word}], "role": "model"}, "index": 0}
            if n == len(words) - 1:
                candidate["finishReason"] = finish
            answers.append({"candidates": [candidate],
                            "usageMetadata": prompt.usage(spent, thoughts)})  # fmt: skip
        if not words:
            answers.append({"candidates": [{"content": {"parts": [], "role": "model"},
                                            "finishReason": finish, "index": 0}],
                            "usageMetadata": prompt.usage(0, thoughts)})  # fmt: skip
        return answers

    def _reply(self, prompt: Prompt) -> str:
        heard = prompt.audio_seconds
        reply = f"I heard {heard:.1f} seconds of audio." if heard else "Hello from Gemini."
        if prompt.instructed:
            reply += " (as instructed)"
        if prompt.mentions("unsafe-output"):
            reply = "Well"
        for stop in prompt.config.get("stopSequences") or []:
            if stop in reply:
                reply = reply[: reply.index(stop)]
        return reply

    # --- speech ---------------------------------------------------------------------------

    def _tts(self, prompt: Prompt) -> list[dict]:
        if prompt.config.get("responseModalities") != ["AUDIO"]:
            raise Refused(400, "Model does not support the requested response modalities: "
                               "TEXT")  # fmt: skip
        speech = prompt.config.get("speechConfig") or {}
        voice = (((speech.get("voiceConfig") or {}).get("prebuiltVoiceConfig") or {})
                 .get("voiceName"))  # fmt: skip
        if voice not in VOICES:
            raise Refused(400, f"Voice name {voice} is not supported. Allowed voice names "
                               f"are: {', '.join(v.lower() for v in VOICES)}")  # fmt: skip
        seconds = sum(len(t) for t in prompt.texts) * SECONDS_PER_CHARACTER
        pcm = tone(seconds)
        piece = int(TTS_PIECE_SECONDS * 24000) * 2
        answers, sent = [], 0
        for start in range(0, len(pcm), piece):
            chunk = pcm[start : start + piece]
            sent += len(chunk)
            tokens = math.ceil(sent / 48000 * TTS_TOKENS_PER_SECOND)
            part = {"inlineData": {"mimeType": PCM_MIME,
                                   "data": base64.b64encode(chunk).decode()}}  # fmt: skip
            candidate = {"content": {"parts": [part], "role": "model"}, "index": 0}
            if start + piece >= len(pcm):
                candidate["finishReason"] = "STOP"
            answers.append({"candidates": [candidate],
                            "usageMetadata": prompt.usage(tokens, modality="AUDIO")})  # fmt: skip
        return answers


def merged(answers: list[dict]) -> dict:
    """A stream's answers as generateContent's one answer: the parts joined, the last
    answer's finish reason and usage."""
    whole = dict(answers[-1])
    if "candidates" not in whole:
        return whole
    parts: list[dict] = []
    for answer in answers:
        for part in answer["candidates"][0]["content"]["parts"]:
            if "text" in part and parts and "text" in parts[-1]:
                parts[-1] = {"text": parts[-1]["text"] + part["text"]}
            elif "inlineData" in part and parts and "inlineData" in parts[-1]:
                joined = base64.b64decode(parts[-1]["inlineData"]["data"]) + base64.b64decode(
                    part["inlineData"]["data"]
                )
                parts[-1] = {"inlineData": {"mimeType": PCM_MIME,
                                            "data": base64.b64encode(joined).decode()}}  # fmt: skip
            else:
                parts.append(part)
    candidate = {**whole["candidates"][0], "content": {"parts": parts, "role": "model"}}
    return {**whole, "candidates": [candidate]}


def start_fake() -> tuple[str, Callable[[], None]]:
    """A running fake Gemini API: (its base_url, a function that stops it)."""
    fake = FakeGemini().start()
    return fake.url, fake.stop
