"""Google Gemini (the Gemini API): chat that hears audio, and Gemini's text to speech.

Clients speak OpenAI's API; this provider translates both ways:

- chat: an OpenAI chat body becomes `POST {base_url}/v1beta/models/{model}:generateContent`
  (`:streamGenerateContent?alt=sse` when streamed): messages become `contents[].parts[]`
  (text, and `input_audio` parts as `inline_data {mime_type, data}`; m4a and webm, which
  Gemini does not read, are re-encoded as WAV first), system and developer messages the
  `systemInstruction`, and max_tokens / temperature / top_p / stop / seed / penalties the
  `generationConfig`. The answer comes back as OpenAI's `chat.completion` or its chunks,
  with usage from `usageMetadata` (the prompt's AUDIO tokens as `audio_tokens`, thinking
  tokens billed as completion tokens and shown as `reasoning_tokens`). Audio chat relays
  (ChatRelay) through this translation; text chat (ChatModel) uses the same one.
  Gemini's chat models do not speak replies here: `modalities: ["audio"]` is refused.
- speech: `gemini-2.5-flash-preview-tts` and its kin answer `generateContent` with
  `responseModalities: ["AUDIO"]` and a prebuilt voice, in base64 pcm16 at 24 kHz
  (`audio/L16;codec=pcm;rate=24000`). The pieces of `streamGenerateContent` are encoded
  to the requested response_format (gateway.audio.encode) and sent as they arrive;
  `speed` stretches them (gateway.audio.tempo), `instructions` go before the text as
  Gemini's style direction ("Say cheerfully: ..."). OpenAI's voice names map to Gemini
  voices of a like character, and Gemini's 30 voice names are accepted as they are.

Errors: Gemini's `{"error": {"code": 400, "message", "status": "INVALID_ARGUMENT"}}`
become OpenAI envelopes (the status as the code: INVALID_ARGUMENT is `invalid_value`,
NOT_FOUND `model_not_found`, RESOURCE_EXHAUSTED `rate_limit_exceeded`); a rejected key,
which Gemini answers with a 400 (reason API_KEY_INVALID), is our 502
upstream_auth_failed like any 401/403; a prompt Gemini blocks is a 400 `content_filter`.

Entry options: `thinking_budget` (generationConfig.thinkingConfig.thinkingBudget; 0 turns
thinking off on models that allow it), `voices` (OpenAI name -> Gemini voice, added to the
defaults), `tts_streaming = false` for a speech model that only answers generateContent.
The upstream table's `api_version` is "v1beta" unless set.

Example catalog:

    [upstreams.gemini]
    base_url = "https://generativelanguage.googleapis.com"
    api_key_env = "GEMINI_API_KEY"

    [models."gemini/gemini-2.5-flash"]
    kind = "chat"
    provider = "gemini"
    upstream = "gemini"
    target = "gemini-2.5-flash"
    input_modalities = ["text", "audio"]
    price = { per_million_text_input_tokens = 0.30, per_million_audio_input_tokens = 1.00,
              per_million_text_output_tokens = 2.50 }

    [models."gemini/gemini-2.5-flash-preview-tts"]
    kind = "speech"
    provider = "gemini"
    upstream = "gemini"
    target = "gemini-2.5-flash-preview-tts"
    price = { per_million_characters = 15 }
"""

import asyncio
import binascii
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pybase64
from httpx_sse import EventSource

from core.errors import OpenAIError, invalid_param
from gateway.audio import transcode
from gateway.audio.encode import OUTPUT_RATE, StreamEncoder
from gateway.audio.tempo import change_tempo
from gateway.catalog import ModelEntry, catalog
from gateway.providers.base import ChatJob, ChatReply, SpeechJob, SpeechMeter
from gateway.providers.upstream import CHARS_PER_TOKEN, mid_stream_failure
from gateway.providers.upstream_client import (
    Dialect,
    auth_failed,
    bad_response,
    client_for,
    timed_out,
)

DEFAULT_API_VERSION = "v1beta"
# The audio formats Gemini reads inline; OpenAI's m4a and webm are re-encoded as WAV.
AUDIO_MIME_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
}
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}  # any other reason (OTHER, LANGUAGE, ...) ends the reply as "stop"
STATUS_CODES = {
    "INVALID_ARGUMENT": "invalid_value",
    "NOT_FOUND": "model_not_found",
    "RESOURCE_EXHAUSTED": "rate_limit_exceeded",
}
KEY_REJECTED = "gemini_api_key_invalid"  # Gemini's 400 for a bad key; never shown
GEMINI_VOICES = (
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe",
    "Autonoe", "Enceladus", "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib",
    "Rasalgethi", "Laomedeia", "Achernar", "Alnilam", "Schedar", "Gacrux", "Pulcherrima",
    "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia", "Sadaltager", "Sulafat",
)  # fmt: skip
# OpenAI's voices, each as the Gemini voice Google describes most like it.
OPENAI_VOICE_MAP = {
    "alloy": "Kore",  # firm, neutral
    "ash": "Orus",  # firm, male
    "ballad": "Enceladus",  # breathy
    "coral": "Aoede",  # breezy
    "echo": "Charon",  # informative
    "fable": "Iapetus",  # clear
    "nova": "Leda",  # youthful
    "onyx": "Algenib",  # gravelly
    "sage": "Sulafat",  # warm
    "shimmer": "Zephyr",  # bright
    "verse": "Puck",  # upbeat
    "marin": "Achernar",  # soft
    "cedar": "Alnilam",  # firm
}
PCM_RATE = 24_000  # Gemini's TTS output, unless its mimeType says otherwise


def _api_key_header(key: str) -> dict[str, str]:
    return {"x-goog-api-key": key}


def gemini_error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of Gemini's error body, with its status as an OpenAI code."""
    if isinstance(body, list) and body:  # a JSON-array stream answers errors in a list
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", None, None
    reasons = [d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)]
    status = str(error.get("status") or "")
    if "API_KEY_INVALID" in reasons:
        code = KEY_REJECTED
    else:
        code = STATUS_CODES.get(status, status.lower() or None)
    return str(error.get("message") or ""), None, code


GEMINI = Dialect(auth_headers=_api_key_header, error_fields=gemini_error_fields)


def content_filtered(reason: str) -> OpenAIError:
    return invalid_param(
        f"Gemini blocked the prompt ({reason}). Please modify your prompt and retry.",
        param=None,
        code="content_filter",
    )


# --- OpenAI chat body -> Gemini request ----------------------------------------------------


async def _audio_part(audio: dict[str, Any], param: str) -> dict[str, Any]:
    fmt, data = str(audio.get("format", "")), str(audio.get("data", ""))
    if fmt not in AUDIO_MIME_TYPES:
        # Gemini does not read this container: decode it as we would, and send it as WAV.
        try:
            samples = await asyncio.to_thread(transcode.decode_mono16k, pybase64.b64decode(data))
        except OpenAIError as exc:
            raise invalid_param(exc.message, param=f"{param}.data") from None
        wav, fmt = await asyncio.to_thread(transcode.encode, samples, ("wav",))
        data = pybase64.b64encode(wav).decode("ascii")
    return {"inline_data": {"mime_type": AUDIO_MIME_TYPES[fmt], "data": data}}


async def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for index, part in enumerate(content or []):
        if part.get("type") == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif part.get("type") == "input_audio":
            where = f"{param}[{index}].input_audio"
            parts.append(await _audio_part(part.get("input_audio") or {}, where))
    return parts


def _generation_config(body: dict[str, Any], thinking_budget: Any) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if (body.get("response_format") or {}).get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    if thinking_budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": int(thinking_budget)}
    return config


async def gemini_request(body: dict[str, Any], thinking_budget: Any = None) -> dict[str, Any]:
    """The generateContent request for a (validated) OpenAI chat body."""
    if "audio" in (body.get("modalities") or []):
        raise invalid_param(
            "Gemini's chat models answer in text here; ask for modalities ['text'].",
            param="modalities",
            code="unsupported_value",
        )
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    for index, message in enumerate(body.get("messages") or []):
        parts = await _parts(message.get("content"), f"messages[{index}].content")
        if message.get("role") in ("system", "developer"):
            system += [part for part in parts if "text" in part]
        elif parts:  # an assistant turn given back only as an audio id has nothing to send
            role = "model" if message.get("role") == "assistant" else "user"
            contents.append({"role": role, "parts": parts})
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    if config := _generation_config(body, thinking_budget):
        request["generationConfig"] = config
    return request


# --- Gemini answer -> OpenAI chat completion ----------------------------------------------


def openai_usage(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's usage object from Gemini's usageMetadata (thinking billed as output)."""
    metadata = metadata or {}
    prompt = int(metadata.get("promptTokenCount") or 0)
    audio_in = sum(
        int(detail.get("tokenCount") or 0)
        for detail in metadata.get("promptTokensDetails") or []
        if detail.get("modality") == "AUDIO"
    )
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    completion = int(metadata.get("candidatesTokenCount") or 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "audio_tokens": audio_in,
            "cached_tokens": int(metadata.get("cachedContentTokenCount") or 0),
        },
        "completion_tokens_details": {"reasoning_tokens": thoughts, "audio_tokens": 0},
    }


def _candidate(answer: dict[str, Any]) -> dict[str, Any] | None:
    """The answer's first candidate; a prompt Gemini blocked has none and is refused."""
    candidates = answer.get("candidates")
    if candidates:
        return candidates[0] if isinstance(candidates[0], dict) else None
    blocked = (answer.get("promptFeedback") or {}).get("blockReason")
    if blocked:
        raise content_filtered(str(blocked))
    return None


def _text_of(candidate: dict[str, Any]) -> str:
    parts = (candidate.get("content") or {}).get("parts") or []
    return "".join(
        str(part.get("text", ""))
        for part in parts
        if isinstance(part, dict) and not part.get("thought")
    )


class Envelope:
    """The id, time and model name every chunk of one answer shares."""

    def __init__(self, answer_id: str | None, model: str) -> None:
        self.id = f"chatcmpl-{answer_id or uuid.uuid4().hex[:29]}"
        self.created = int(time.time())
        self.model = model

    def of(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self.of("chat.completion.chunk"), "choices": [choice], "usage": None}


def openai_completion(answer: dict[str, Any], model: str) -> dict[str, Any]:
    candidate = _candidate(answer)
    if candidate is None:
        raise bad_response("no candidates")
    message = {
        "role": "assistant",
        "content": _text_of(candidate),
        "refusal": None,
        "annotations": [],
    }
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": FINISH_REASONS.get(candidate.get("finishReason"), "stop"),
    }
    return {
        **Envelope(answer.get("responseId"), model).of("chat.completion"),
        "choices": [choice],
        "usage": openai_usage(answer.get("usageMetadata")),
    }


async def openai_chunks(
    events: AsyncIterator[dict[str, Any]], model: str
) -> AsyncIterator[dict[str, Any]]:
    """Gemini's streamed answers as OpenAI chunks, then the usage chunk."""
    envelope: Envelope | None = None
    finish_reason = None
    usage: dict[str, Any] | None = None
    async for event in events:
        candidate = _candidate(event)  # a blocked prompt is refused before any chunk
        if envelope is None:
            envelope = Envelope(event.get("responseId"), model)
            yield envelope.chunk({"role": "assistant", "content": "", "refusal": None})
        usage = event.get("usageMetadata") or usage
        if candidate is None:
            continue
        if text := _text_of(candidate):
            yield envelope.chunk({"content": text})
        if candidate.get("finishReason"):
            finish_reason = FINISH_REASONS.get(candidate["finishReason"], "stop")
    if envelope is None or finish_reason is None:
        raise mid_stream_failure()  # closed before Gemini said why it stopped
    yield envelope.chunk({}, finish_reason)
    yield {**envelope.of("chat.completion.chunk"), "choices": [], "usage": openai_usage(usage)}


def _chat_body(job: ChatJob) -> dict[str, Any]:
    return {
        "messages": [{"role": turn.role, "content": turn.text} for turn in job.messages],
        "max_tokens": job.max_tokens,
        "temperature": job.temperature,
        "top_p": job.top_p,
        "stop": job.stop,
        "seed": job.seed,
    }


def _reply_of(text: str, finish_reason: str | None, usage: dict[str, Any]) -> ChatReply:
    return ChatReply(
        text=text,
        finish_reason="length" if finish_reason == "length" else "stop",
        prompt_tokens=int(usage["prompt_tokens"]),
        completion_tokens=int(usage["completion_tokens"]),
    )


# --- speech -------------------------------------------------------------------------------


def _speech_prompt(job: SpeechJob) -> str:
    """Gemini TTS takes its style direction in the text, before a colon."""
    if not job.instructions:
        return job.input
    return f"{job.instructions.strip().rstrip('.:')}: {job.input}"


def _pcm_pieces(answer: dict[str, Any]) -> list[tuple[bytes, int]]:
    """The pcm16 of each inline audio part of one answer, with its sample rate."""
    candidate = _candidate(answer)
    pieces = []
    for part in ((candidate or {}).get("content") or {}).get("parts") or []:
        inline = part.get("inlineData") or part.get("inline_data")
        if not isinstance(inline, dict):
            continue
        mime = str(inline.get("mimeType") or inline.get("mime_type") or "")
        rate = re.search(r"rate=(\d+)", mime)
        try:
            pcm = pybase64.b64decode(str(inline.get("data", "")), validate=True)
        except binascii.Error:
            raise bad_response("undecodable audio") from None
        pieces.append((pcm, int(rate.group(1)) if rate else PCM_RATE))
    return pieces


class SpeechStream:
    """Gemini's pcm pieces encoded into one clip of the requested format, as they come.

    Asked for pcm at Gemini's own rate and speed, the clip is Gemini's pcm16 as it came:
    no encoder, and no thread to run one on."""

    def __init__(self, job: SpeechJob, meter: SpeechMeter) -> None:
        self.job, self.meter = job, meter
        self.encoder: StreamEncoder | None = None
        self.carry = b""  # an odd byte left at a piece's end, for the next one
        self.seconds_as_sent = 0.0

    def _whole_samples(self, pcm: bytes) -> bytes:
        pcm, self.carry = self.carry + pcm, b""
        if len(pcm) % 2:
            pcm, self.carry = pcm[:-1], pcm[-1:]
        return pcm

    def sent_as_is(self, rate: int) -> bool:
        job = self.job
        as_made = job.response_format == "pcm" and rate == OUTPUT_RATE and job.speed == 1.0
        return self.encoder is None and as_made

    def as_sent(self, pcm: bytes) -> bytes:
        pcm = self._whole_samples(pcm)
        self.seconds_as_sent += len(pcm) / 2 / OUTPUT_RATE
        self.meter.audio_seconds = self.seconds_as_sent
        return pcm

    def encode(self, pcm: bytes, rate: int) -> bytes:
        pcm = self._whole_samples(pcm)
        if self.encoder is None:
            self.encoder = StreamEncoder(self.job.response_format, rate)
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if self.job.speed != 1.0:
            samples = change_tempo(samples, rate, self.job.speed)
        out = self.encoder.encode(samples)
        self.meter.audio_seconds = self.seconds_as_sent + self.encoder.seconds_out
        return out

    def finish(self) -> bytes:
        if self.encoder is None:
            if not self.seconds_as_sent:
                raise bad_response("no audio")
            return b""
        tail = self.encoder.finish()
        self.meter.audio_seconds = self.seconds_as_sent + self.encoder.seconds_out
        return tail

    def close(self) -> None:
        if self.encoder is not None:
            self.encoder.close()


# --- the provider -------------------------------------------------------------------------


class GeminiProvider:
    """ChatModel, ChatRelay and Synthesizer backed by one Gemini model."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.client = client_for(catalog().upstreams[entry.upstream], GEMINI)
        self.model = entry.target
        self.api_version = str(self.client.upstream.options.get("api_version", DEFAULT_API_VERSION))
        self.thinking_budget = entry.options.get("thinking_budget")
        self.tts_streaming = bool(entry.options.get("tts_streaming", True))
        self._voices = {
            **OPENAI_VOICE_MAP,
            **{voice: voice for voice in GEMINI_VOICES},
            **dict(entry.options.get("voices", {})),
        }

    @property
    def label(self) -> str:
        return self.client.label

    def _path(self, method: str) -> str:
        return f"/{self.api_version}/models/{quote(self.model, safe='')}:{method}"

    # --- HTTP -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _key_checked(self):
        """Gemini answers a bad key with a 400: it is our 502 like any rejected key."""
        try:
            yield
        except OpenAIError as exc:
            if exc.code == KEY_REJECTED:
                raise auth_failed() from None
            raise

    async def _generate(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._key_checked():
            return await self.client.json("POST", self._path("generateContent"), json=request)

    async def _events(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The answers of a streamGenerateContent call, as they arrive, until it closes."""
        with self._key_checked():
            path = self._path("streamGenerateContent") + "?alt=sse"
            response = await self.client.open("POST", path, json=request)
        try:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise bad_response(f"expected an event stream, got {content_type.split(';')[0]}")
            try:
                async for event in EventSource(response).aiter_sse():
                    try:
                        answer = json.loads(event.data)
                    except ValueError:
                        raise bad_response("malformed event") from None
                    if not isinstance(answer, dict) or "error" in answer:
                        raise mid_stream_failure()  # Gemini's error after the headers
                    yield answer
            except httpx.TimeoutException:
                raise timed_out() from None
            except httpx.TransportError:
                raise mid_stream_failure() from None
        finally:
            await response.aclose()

    # --- chat -----------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        # Only used when usage is missing; Gemini reports its own counts in usageMetadata.
        return max(1, len(text) // CHARS_PER_TOKEN) if text else 0

    async def relay_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        request = await gemini_request(body, self.thinking_budget)
        return openai_completion(await self._generate(request), self.model)

    async def relay_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        request = await gemini_request(body, self.thinking_budget)
        events = self._events(request)
        chunks = openai_chunks(events, self.model)
        async with contextlib.aclosing(events), contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def complete(self, job: ChatJob) -> ChatReply:
        answer = await self.relay_chat(_chat_body(job))
        choice = answer["choices"][0]
        return _reply_of(choice["message"]["content"], choice["finish_reason"], answer["usage"])

    async def stream(self, job: ChatJob) -> AsyncIterator[str | ChatReply]:
        parts: list[str] = []
        finish_reason = None
        async with contextlib.aclosing(self.relay_chat_stream(_chat_body(job))) as chunks:
            async for chunk in chunks:
                if chunk.get("usage"):
                    yield _reply_of("".join(parts), finish_reason, chunk["usage"])
                for choice in chunk["choices"]:
                    if delta := choice["delta"].get("content"):
                        parts.append(delta)
                        yield delta
                    finish_reason = choice["finish_reason"] or finish_reason

    # --- speech ---------------------------------------------------------------------------

    def voices(self) -> dict[str, str]:
        return self._voices

    def _speech_request(self, job: SpeechJob) -> dict[str, Any]:
        voice = {"prebuiltVoiceConfig": {"voiceName": self._voices[job.voice]}}
        return {
            "contents": [{"role": "user", "parts": [{"text": _speech_prompt(job)}]}],
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "speechConfig": {"voiceConfig": voice},
            },
        }

    async def _speech_answers(self, job: SpeechJob) -> AsyncIterator[dict[str, Any]]:
        request = self._speech_request(job)
        if not self.tts_streaming:
            yield await self._generate(request)
            return
        async with contextlib.aclosing(self._events(request)) as events:
            async for answer in events:
                yield answer

    async def synthesize(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        meter.characters = len(job.input)
        clip = SpeechStream(job, meter)
        try:
            async with contextlib.aclosing(self._speech_answers(job)) as answers:
                async for answer in answers:
                    for pcm, rate in _pcm_pieces(answer):
                        if clip.sent_as_is(rate):
                            out = clip.as_sent(pcm)
                        else:
                            out = await asyncio.to_thread(clip.encode, pcm, rate)
                        if out:
                            yield out
            tail = await asyncio.to_thread(clip.finish) if clip.encoder else clip.finish()
            if tail:
                yield tail
        finally:
            clip.close()
