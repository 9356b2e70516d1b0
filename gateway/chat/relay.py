"""Audio chat on an upstream that hears and speaks itself: the body goes through as is.

A cascade turns audio into text here; an upstream audio model (OpenAI's, or another
ARouter) takes `input_audio` parts and `modalities: ["audio"]` natively, so the request is
relayed whole and the answer comes back with only `model` renamed to the id the client
asked for (and a null `system_fingerprint` dropped). Usage is read from the upstream's
own usage object and billed at our prices.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import JsonResponse

from gateway.chat.request import ChatRequest
from gateway.chat.usage import ChatUsage
from usage.ledger import Charge

DONE = b"data: [DONE]\n\n"


def usage_from(raw: dict[str, Any] | None) -> ChatUsage:
    """Our usage from an upstream's OpenAI usage object (absent parts count as zero)."""
    raw = raw or {}
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    audio_in = int(prompt.get("audio_tokens") or 0)
    audio_out = int(completion.get("audio_tokens") or 0)
    return ChatUsage(
        text_in=max(0, int(raw.get("prompt_tokens") or 0) - audio_in),
        audio_in=audio_in,
        text_out=max(0, int(raw.get("completion_tokens") or 0) - audio_out),
        audio_out=audio_out,
    )


def as_ours(body: dict[str, Any], chat: ChatRequest) -> None:
    """An upstream's completion or chunk as we answer it: under the id the client asked
    for, and without a null `system_fingerprint` (the spec types it as a string)."""
    body["model"] = chat.model
    if "system_fingerprint" in body and body["system_fingerprint"] is None:
        del body["system_fingerprint"]


async def relay(chat: ChatRequest, body: dict[str, Any], provider, charge: Charge) -> JsonResponse:
    answer = await provider.relay_chat(body)
    usage = usage_from(answer.get("usage"))
    usage.meter(charge.metered)
    as_ours(answer, chat)
    if isinstance(answer.get("usage"), dict):
        answer["usage"]["cost"] = float(charge.cost)
    await charge.record(200)
    return JsonResponse(answer)


async def relay_stream(
    chat: ChatRequest, body: dict[str, Any], provider, charge: Charge
) -> AsyncIterator[bytes]:
    """The upstream's SSE events, renamed; its usage chunk is read for the ledger and
    passed on only if the client asked for it."""
    upstream_body = {**body, "stream_options": {**(body.get("stream_options") or {})}}
    upstream_body["stream_options"]["include_usage"] = True
    buffer = b""
    status = 200
    recorded = False
    try:
        async for data in provider.relay_chat_stream(upstream_body):
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                forwarded = _forward(event, chat, charge)
                if forwarded == DONE:
                    # Billed before [DONE]: a client that checks usage right after sees it.
                    recorded = True
                    await charge.record(status)
                if forwarded is not None:
                    yield forwarded
    except Exception as exc:
        from gateway.errors import OpenAIError, server_error

        error = exc if isinstance(exc, OpenAIError) else server_error()
        status = error.status
        yield f"data: {json.dumps(error.body())}\n\n".encode()
    finally:
        if not recorded:
            await charge.record(status)


def _forward(event: bytes, chat: ChatRequest, charge: Charge) -> bytes | None:
    text = event.decode().strip()
    if not text.startswith("data:"):
        return event + b"\n\n" if text else None
    payload = text[len("data:") :].strip()
    if payload == "[DONE]":
        return DONE
    try:
        chunk = json.loads(payload)
    except ValueError:
        return event + b"\n\n"
    as_ours(chunk, chat)
    if chunk.get("usage"):
        usage_from(chunk["usage"]).meter(charge.metered)
        chunk["usage"]["cost"] = float(charge.cost)
    if not chat.include_usage:
        if chunk.get("usage") and not chunk.get("choices"):
            return None  # the usage chunk we asked for on our own account
        chunk.pop("usage", None)
    return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()
