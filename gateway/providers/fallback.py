"""A model's fallback chain (`fallbacks = [...]` in the catalog) behind one provider.

`provider_for` wraps a model that has fallbacks in a `FallbackProvider`, which implements
the same capability interfaces, so routers never know: it asks the model's own provider
first and, when that fails in a way another provider could fix (unreachable, timeout,
5xx, rate limited, cooling down), the next model of the chain. A client error (400 …) is
the request's fault and is raised at once. Streams fall back only before their first item,
while nothing has been sent to the client.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any

from core.errors import OpenAIError
from gateway.catalog import ModelEntry, catalog
from gateway.providers.attempts import current_attempt_log


def can_fall_back(exc: BaseException) -> bool:
    if isinstance(exc, OpenAIError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, Exception)  # a local engine crashing: another may still answer


class FallbackProvider:
    def __init__(self, entry: ModelEntry, primary: object) -> None:
        self.entry = entry
        self.primary = primary

    def chain(self) -> list[tuple[str, object]]:
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
        # Upstream providers log each HTTP try themselves; local engines are logged here.
        if not hasattr(provider, "client"):
            current_attempt_log().add(label, outcome)

    async def _first_success(self, method: str, *args) -> Any:
        failure: BaseException | None = None
        for label, provider in self.chain():
            if not hasattr(provider, method):
                continue
            try:
                result = await getattr(provider, method)(*args)
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

    async def _first_stream(self, open_stream: Callable[[object], AsyncIterator]) -> AsyncIterator:
        failure: BaseException | None = None
        for label, provider in self.chain():
            try:
                stream = open_stream(provider)
            except AttributeError:
                continue
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

    # --- Transcriber --------------------------------------------------------------------

    async def transcribe(self, job):
        return await self._first_success("transcribe", job)

    def stream_transcription(self, job):
        return self._first_stream(lambda p: p.stream_transcription(job))

    # --- Synthesizer --------------------------------------------------------------------

    def voices(self) -> dict[str, str]:
        return self.primary.voices()

    def synthesize(self, job, meter):
        return self._first_stream(lambda p: p.synthesize(job, meter))

    # --- ChatModel ----------------------------------------------------------------------

    async def complete(self, job):
        return await self._first_success("complete", job)

    def stream(self, job):
        return self._first_stream(lambda p: p.stream(job))

    def count_tokens(self, text: str) -> int:
        return self.primary.count_tokens(text)

    def __getattr__(self, name: str):
        # Anything else a router asks of its provider (engine-specific helpers, whole-body
        # relays): the primary's, without fallback.
        return getattr(self.primary, name)
