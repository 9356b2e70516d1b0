"""Audio chat on an upstream that hears and speaks itself: the body goes through as is.

A cascade turns audio into text here; an upstream audio model (OpenAI's, or another
ARouter) takes `input_audio` parts and `modalities: ["audio"]` natively, so the request is
relayed whole and the answer comes back with only `model` renamed to the id the client
asked for (and a null `system_fingerprint` dropped). Usage is read from the upstream's
own usage object and billed at our prices.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gateway.chat.request import ChatRequest
from gateway.chat.token_usage import ChatUsage
from gateway.lifecycle import MeteredCall
from gateway.providers.base import ChatRelay
from gateway.sse import sse_event


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


async def relay(
    chat: ChatRequest, body: dict[str, Any], provider: ChatRelay, call: MeteredCall
) -> dict[str, Any]:
    answer = await provider.relay_chat(body)
    usage_from(answer.get("usage")).meter(call.metered)
    as_ours(answer, chat)
    if isinstance(answer.get("usage"), dict):
        answer["usage"]["cost"] = float(call.cost)
    return answer


async def relay_stream(
    chat: ChatRequest, body: dict[str, Any], provider: ChatRelay, call: MeteredCall
) -> AsyncIterator[bytes]:
    """The upstream's chunks, renamed; its usage chunk is read for the ledger and passed
    on only if the client asked for it."""
    upstream_body = {**body, "stream_options": {**(body.get("stream_options") or {})}}
    upstream_body["stream_options"]["include_usage"] = True
    async with contextlib.aclosing(provider.relay_chat_stream(upstream_body)) as chunks:
        async for chunk in chunks:
            if (forwarded := _forward(chunk, chat, call)) is not None:
                yield sse_event(forwarded)
    # Billed before [DONE]: a client that checks usage right after sees it.
    await call.finish(200)
    yield sse_event("[DONE]")


def _forward(chunk: dict[str, Any], chat: ChatRequest, call: MeteredCall) -> dict | None:
    as_ours(chunk, chat)
    if chunk.get("usage"):
        usage_from(chunk["usage"]).meter(call.metered)
        chunk["usage"]["cost"] = float(call.cost)
    if not chat.include_usage:
        if chunk.get("usage") and not chunk.get("choices"):
            return None  # the usage chunk we asked for on our own account
        chunk.pop("usage", None)
    return chunk
