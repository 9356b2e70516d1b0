"""A chat completion answered from a `AssistantReply`: whole (`chat.completion`) or as SSE chunks.

Both meter what the turn made into the request's `MeteredCall`; a stream bills before its
`[DONE]`, so a client that checks its usage right after sees the row.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pybase64

from gateway.audio.encode import encode_all, wav_header
from gateway.chat import replies
from gateway.chat.conversation import AssistantReply
from gateway.chat.request import ChatRequest
from gateway.chat.token_usage import ChatUsage
from gateway.lifecycle import MeteredCall
from gateway.providers.base import PCM_RATE, Spoken
from gateway.sse import sse_event


def encode_reply_audio(pcm: bytes, fmt: str) -> bytes:
    """The whole spoken reply (pcm16, 24 kHz) in the requested chat audio format."""
    if fmt == "pcm16":
        return pcm
    if fmt == "wav":  # the whole clip is known: a header with its exact sizes
        return wav_header(PCM_RATE, data_size=len(pcm)) + pcm
    return encode_all(np.frombuffer(pcm, dtype=np.int16), fmt, PCM_RATE)


class Completion:
    def __init__(self, chat: ChatRequest, turn: AssistantReply, call: MeteredCall) -> None:
        self.chat, self.turn, self.call = chat, turn, call
        self.id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
        self.created = int(time.time())  # when the request started, as OpenAI reports it

    async def meter(self) -> ChatUsage:
        """The turn's usage so far, metered into the call."""
        usage = await self.turn.usage()
        usage.meter(self.call.metered)
        return usage

    def _envelope(self, kind: str) -> dict[str, Any]:
        # No system_fingerprint: the spec types it as a string and we have none to give.
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.chat.model,
            "service_tier": "default",
        }

    async def whole(self) -> dict[str, Any]:
        pcm = bytearray()
        async with contextlib.aclosing(self.turn.events()) as events:
            async for event in events:
                if isinstance(event, Spoken):
                    pcm += event.pcm
        usage = await self.meter()
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.turn.text,
            "refusal": None,
            "annotations": [],
        }
        if self.chat.wants_audio:
            message["content"] = None
            message["audio"] = await self._spoken_reply(bytes(pcm))
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self.turn.finish_reason,
        }
        return {
            **self._envelope("chat.completion"),
            "choices": [choice],
            "usage": usage.as_openai(self.call.cost),
        }

    async def _spoken_reply(self, pcm: bytes) -> dict[str, Any]:
        audio_id, expires_at = replies.new_audio_id(), replies.expiry()
        data = await asyncio.to_thread(encode_reply_audio, pcm, self.chat.audio.format)
        await replies.remember(audio_id, self.turn.text, expires_at, self.call.api_key.team_id)
        return {
            "id": audio_id,
            "data": pybase64.b64encode(data).decode("ascii"),
            "expires_at": expires_at,
            "transcript": self.turn.text,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        body = {**self._envelope("chat.completion.chunk"), "choices": [choice]}
        if self.chat.include_usage:
            body["usage"] = None
        return sse_event(body)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The reply as chunks; what was made is metered however the stream ends."""
        try:
            speaking = self.chat.wants_audio
            yield self._chunk(
                {"role": "assistant", "content": None if speaking else "", "refusal": None}
            )
            async for delta in self._deltas(speaking):
                yield self._chunk(delta)
            yield self._chunk({}, self.turn.finish_reason)
            usage = await self.meter()
            if self.chat.include_usage:
                yield sse_event(
                    {
                        **self._envelope("chat.completion.chunk"),
                        "choices": [],
                        "usage": usage.as_openai(self.call.cost),
                    }
                )
            await self.call.finish(200)
            yield sse_event("[DONE]")
        finally:
            if not self.call.finished:
                await self.meter()

    async def _deltas(self, speaking: bool) -> AsyncIterator[dict[str, Any]]:
        audio_id = replies.new_audio_id() if speaking else None
        sent_id = False
        async with contextlib.aclosing(self.turn.events()) as events:
            async for event in events:
                if isinstance(event, str) and not speaking:
                    yield {"content": event}
                    continue
                if isinstance(event, str):
                    audio = {"transcript": event}
                elif isinstance(event, Spoken):
                    audio = {"data": pybase64.b64encode(event.pcm).decode("ascii")}
                else:
                    continue
                if not sent_id:
                    audio, sent_id = {"id": audio_id, **audio}, True
                yield {"audio": audio}
        if speaking:
            expires_at = replies.expiry()
            await replies.remember(audio_id, self.turn.text, expires_at, self.call.api_key.team_id)
            yield {"audio": {"id": audio_id, "expires_at": expires_at}}
