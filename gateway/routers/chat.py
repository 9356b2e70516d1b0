"""POST /v1/chat/completions: text and audio in, text or spoken replies out, SSE streaming.

The body is validated by `gateway.chat.request` (errors name the exact param). Audio parts
are transcribed before any byte of the response leaves, so a bad clip is a clean 400 even
when streaming. Spoken replies are made sentence by sentence by the cascade provider.
"""

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from ninja import Router

from gateway.catalog import ModelEntry, catalog
from gateway.chat import replies
from gateway.chat.admission import admit_chat
from gateway.chat.conversation import Turn, prepare
from gateway.chat.relay import relay, relay_stream
from gateway.chat.request import AudioInput, ChatRequest, parse_chat_request
from gateway.errors import OpenAIError, invalid_param, server_error
from gateway.providers import provider_for
from gateway.providers.base import ChatJob
from gateway.providers.cascade import PCM_RATE, Spoken
from usage.ledger import Charge

logger = logging.getLogger(__name__)
router = Router(tags=["chat"])
ENDPOINT = "/v1/chat/completions"


def check_capabilities(chat: ChatRequest, entry: ModelEntry, provider) -> None:
    """400s for what the model cannot do: hear audio, speak, or speak in that voice."""
    if not entry.accepts("audio"):
        for n, message in enumerate(chat.messages):
            for m, part in enumerate(message.parts):
                if isinstance(part, AudioInput):
                    raise invalid_param(
                        f"The model `{chat.model}` does not support audio input.",
                        param=f"messages[{n}].content[{m}].type",
                        code="unsupported_value",
                    )
    if chat.wants_audio:
        if not entry.produces("audio") or (
            not hasattr(provider, "converse") and not relays(provider)
        ):
            raise invalid_param(
                f"The model `{chat.model}` does not support audio output "
                "(GET /v1/models?output_modalities=audio lists those that do).",
                param="modalities",
                code="unsupported_value",
            )
        voices = {} if relays(provider) else provider.voices()
        if voices and chat.audio.voice not in voices:
            raise invalid_param(
                f"Invalid value: '{chat.audio.voice}'. Supported values are: "
                + ", ".join(f"'{v}'" for v in voices)
                + ".",
                param="audio.voice",
                code="invalid_value",
            )


def relays(provider) -> bool:
    """An upstream hears and speaks itself: audio requests go to it whole."""
    return hasattr(provider, "relay_chat")


def encode_reply_audio(pcm: bytes, fmt: str) -> bytes:
    """The whole spoken reply (pcm16, 24 kHz) in the requested chat audio format."""
    if fmt == "pcm16":
        return pcm
    from gateway.audio.encode import encode_all, wav_header

    if fmt == "wav":  # the whole clip is known: a header with its exact sizes
        return wav_header(PCM_RATE, data_size=len(pcm)) + pcm

    return encode_all(np.frombuffer(pcm, dtype=np.int16), fmt, PCM_RATE)


@router.post("/completions", summary="Create chat completion")
async def create_chat_completion(request: HttpRequest):
    chat = parse_chat_request(request.body)
    entry = catalog().resolve(chat.model, "chat")
    provider = provider_for(entry)
    check_capabilities(chat, entry, provider)
    charge = Charge(request=request, entry=entry, endpoint=ENDPOINT)
    # Input audio reserved at its duration; kept (AROUTER_KEEP_UPLOADS_DIR) once admitted.
    await admit_chat(charge, chat, len(request.body))
    if relays(provider) and (chat.has_audio_input or chat.wants_audio):
        return await relay_request(chat, request, provider, charge)
    try:
        messages, heard = await prepare(chat.messages, provider, request.auth.team_id)
    except Exception as exc:  # recorded either way: the row settles the admission too
        await charge.record(getattr(exc, "status", 500))
        raise
    job = ChatJob(
        messages=messages,
        max_tokens=chat.token_budget(),
        temperature=chat.temperature,
        top_p=chat.top_p,
        stop=chat.stop,
        seed=chat.seed,
    )
    turn = Turn(
        entry=entry,
        provider=provider,
        job=job,
        heard=heard,
        voice=chat.audio.voice if chat.wants_audio else None,
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
    created = int(time.time())  # when the request started, as OpenAI reports it
    if chat.stream:
        await charge.open_stream()
        response = StreamingHttpResponse(
            stream_completion(chat, turn, charge, completion_id, created),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    return await complete(chat, turn, charge, completion_id, created)


async def relay_request(chat: ChatRequest, request: HttpRequest, provider, charge: Charge):
    body = json.loads(request.body)
    if chat.stream:
        await charge.open_stream()
        response = StreamingHttpResponse(
            relay_stream(chat, body, provider, charge), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    try:
        return await relay(chat, body, provider, charge)
    except Exception as exc:
        await charge.record(getattr(exc, "status", 500))
        raise


async def complete(
    chat: ChatRequest, turn: Turn, charge: Charge, completion_id: str, created: int
) -> JsonResponse:
    team_id = charge.request.auth.team_id
    pcm = bytearray()
    try:
        async with contextlib.aclosing(turn.events()) as events:
            async for event in events:
                if isinstance(event, Spoken):
                    pcm += event.pcm
    except OpenAIError as exc:
        await charge.record(exc.status)
        raise
    except BaseException as exc:
        # Cancelled (the client left) or broken: bill what was made; a break is a 500.
        (await turn.usage()).meter(charge.metered)
        await charge.record(200 if isinstance(exc, asyncio.CancelledError) else 500)
        raise
    usage = await turn.usage()
    usage.meter(charge.metered)
    message: dict = {
        "role": "assistant",
        "content": turn.text,
        "refusal": None,
        "annotations": [],
    }
    if chat.wants_audio:
        audio_id = replies.new_audio_id()
        expires_at = replies.expiry()
        data = await asyncio.to_thread(encode_reply_audio, bytes(pcm), chat.audio.format)
        await replies.remember(audio_id, turn.text, expires_at, team_id)
        message["content"] = None
        message["audio"] = {
            "id": audio_id,
            "data": base64.b64encode(data).decode("ascii"),
            "expires_at": expires_at,
            "transcript": turn.text,
        }
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": chat.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": turn.finish_reason,
            }
        ],
        "usage": usage.as_openai(charge.cost),
        "service_tier": "default",
        # No system_fingerprint: the spec types it as a string and we have none to give.
    }
    await charge.record(200)
    return JsonResponse(body)


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def stream_completion(
    chat: ChatRequest, turn: Turn, charge: Charge, completion_id: str, created: int
) -> AsyncIterator[bytes]:
    team_id = charge.request.auth.team_id

    def chunk(delta: dict, finish_reason: str | None = None) -> bytes:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": chat.model,
            "service_tier": "default",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if chat.include_usage:
            body["usage"] = None
        return sse(body)

    status = 200
    finished = False
    try:
        speaking = chat.wants_audio
        audio_id = replies.new_audio_id() if speaking else None
        first = {"role": "assistant", "content": None if speaking else "", "refusal": None}
        yield chunk(first)
        sent_id = False
        async with contextlib.aclosing(turn.events()) as events:
            async for event in events:
                if isinstance(event, str):
                    if not speaking:
                        yield chunk({"content": event})
                        continue
                    audio = {"transcript": event}
                    if not sent_id:
                        audio = {"id": audio_id, **audio}
                        sent_id = True
                    yield chunk({"audio": audio})
                elif isinstance(event, Spoken):
                    audio = {"data": base64.b64encode(event.pcm).decode("ascii")}
                    if not sent_id:
                        audio = {"id": audio_id, **audio}
                        sent_id = True
                    yield chunk({"audio": audio})
        if speaking:
            expires_at = replies.expiry()
            await replies.remember(audio_id, turn.text, expires_at, team_id)
            yield chunk({"audio": {"id": audio_id, "expires_at": expires_at}})
        yield chunk({}, turn.finish_reason)
        usage = await turn.usage()
        usage.meter(charge.metered)
        if chat.include_usage:
            yield sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": chat.model,
                    "service_tier": "default",
                    "choices": [],
                    "usage": usage.as_openai(charge.cost),
                }
            )
        # Billed before [DONE]: a client that checks its usage right after sees the row.
        finished = True
        await charge.record(status)
        yield sse("[DONE]")
    except OpenAIError as exc:
        # Headers are gone; OpenAI reports a mid-stream failure as an error event.
        status = exc.status
        yield sse(exc.body())
    except Exception:
        logger.exception("chat stream failed")
        error = server_error()
        status = error.status
        yield sse(error.body())
    finally:
        if not finished:
            # The client left (status stays 200: the response had started) or the model
            # failed: either way the ledger gets what was produced so far.
            (await turn.usage()).meter(charge.metered)
            await charge.record(status)
