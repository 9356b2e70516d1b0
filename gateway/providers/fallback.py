"""A model's fallback chain (`fallbacks = [...]` in the catalog) behind one provider.

`provider_for` wraps a model that has fallbacks with `with_fallbacks`, whose provider
has exactly the capability interfaces of the model's own provider, so routers never know
(and an isinstance check against a capability answers as it would for the model's own
provider). It asks that provider first and, when it fails in a way another provider could
fix (unreachable, timeout, 5xx, rate limited, cooling down), the next model of the chain.
A client error (400 …) is the request's fault and is raised at once. Streams fall back
only before their first item, while nothing has been sent to the client.
"""

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from core.errors import OpenAIError
from gateway.catalog import ModelEntry, catalog
from gateway.providers.attempts import current_attempt_log
from gateway.providers.base import (
    ChatModel,
    ChatRelay,
    LogsOwnAttempts,
    Preloadable,
    Synthesizer,
    Transcriber,
    VoiceChat,
)


def can_fall_back(exc: BaseException) -> bool:
    if isinstance(exc, OpenAIError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, Exception)  # a local engine crashing: another may still answer


class FallbackProvider:
    """The chain and the two ways of walking it; one subclass per capability uses them."""

    def __init__(self, entry: ModelEntry, primary: Any) -> None:
        self.entry = entry
        self.primary = primary

    def chain(self) -> list[tuple[str, Any]]:
        """(label, provider) for the model itself, then each fallback, in order."""
        from gateway.providers import provider_for

        models = catalog().models
        chain = [(self.entry.provider, self.primary)]
        for model_id in self.entry.fallbacks:
            provider = provider_for(models[model_id])
            if isinstance(provider, FallbackProvider):
                provider = provider.primary  # one level: chains do not nest or loop
            chain.append((models[model_id].provider, provider))
        return chain

    def _log(self, label: str, provider: object, outcome: str) -> None:
        if not isinstance(provider, LogsOwnAttempts):
            current_attempt_log().add(label, outcome)

    async def _first_success(self, capability: type, call: Callable[[Any], Awaitable]) -> Any:
        """`call`'s answer from the first provider of the chain with `capability` to give one."""
        failure: BaseException | None = None
        for label, provider in self.chain():
            if not isinstance(provider, capability):
                continue
            try:
                result = await call(provider)
            except Exception as exc:
                self._log(label, provider, "error")
                if not can_fall_back(exc):
                    raise
                failure = exc
                continue
            self._log(label, provider, "ok")
            return result
        assert failure is not None
        raise failure

    async def _first_stream(
        self, capability: type, open_stream: Callable[[Any], AsyncIterator]
    ) -> AsyncIterator:
        """The stream of the first provider with `capability` whose first item arrives."""
        failure: BaseException | None = None
        for label, provider in self.chain():
            if not isinstance(provider, capability):
                continue
            stream = open_stream(provider)
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                self._log(label, provider, "ok")
                return
            except Exception as exc:
                self._log(label, provider, "error")
                await stream.aclose()
                if not can_fall_back(exc):
                    raise
                failure = exc
                continue
            self._log(label, provider, "ok")
            try:
                yield first
                async for item in stream:
                    yield item
            finally:
                await stream.aclose()
            return
        assert failure is not None
        raise failure


class _Transcribes(FallbackProvider):
    async def transcribe(self, job):
        return await self._first_success(Transcriber, lambda p: p.transcribe(job))

    def stream_transcription(self, job):
        return self._first_stream(Transcriber, lambda p: p.stream_transcription(job))


class _Speaks(FallbackProvider):
    def voices(self) -> dict[str, str]:
        return self.primary.voices()

    def synthesize(self, job, meter):
        return self._first_stream(Synthesizer, lambda p: p.synthesize(job, meter))


class _Chats(FallbackProvider):
    async def complete(self, job):
        return await self._first_success(ChatModel, lambda p: p.complete(job))

    def stream(self, job):
        return self._first_stream(ChatModel, lambda p: p.stream(job))

    def count_tokens(self, text: str) -> int:
        return self.primary.count_tokens(text)


# Whole-body relays, audio chat and preloading are the model's own provider's: they do not
# fall back (a relayed body or a spoken reply is specific to the provider that makes it).


class _Relays(FallbackProvider):
    async def relay_chat(self, body):
        return await self.primary.relay_chat(body)

    def relay_chat_stream(self, body):
        return self.primary.relay_chat_stream(body)


class _VoiceChats(FallbackProvider):
    def voices(self) -> dict[str, str]:
        return self.primary.voices()

    async def hear(self, data, fmt, param):
        return await self.primary.hear(data, fmt, param)

    def converse(self, job, voice):
        return self.primary.converse(job, voice)


class _Preloads(FallbackProvider):
    def preload(self) -> None:
        self.primary.preload()


_BY_CAPABILITY: tuple[tuple[type, type[FallbackProvider]], ...] = (
    (Transcriber, _Transcribes),
    (Synthesizer, _Speaks),
    (ChatModel, _Chats),
    (ChatRelay, _Relays),
    (VoiceChat, _VoiceChats),
    (Preloadable, _Preloads),
)


@functools.cache
def _fallback_class(parts: tuple[type[FallbackProvider], ...]) -> type[FallbackProvider]:
    return type("FallbackProvider", parts or (FallbackProvider,), {})


def with_fallbacks(entry: ModelEntry, primary: object) -> FallbackProvider:
    """`primary` behind `entry`'s fallback chain, with the capabilities `primary` has."""
    parts = tuple(part for capability, part in _BY_CAPABILITY if isinstance(primary, capability))
    return _fallback_class(parts)(entry, primary)
