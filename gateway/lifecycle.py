"""A metered request's life, in one place: admit, run the provider, record, settle.

Every /v1 endpoint and every realtime response is a `MeteredCall`:

1. `admit(estimate)` checks the key's limits before any provider runs (raising OpenAI's
   4xx) and reserves the estimated cost;
2. the provider runs inside `running()` for whole answers, or its body is wrapped by
   `streaming()` for answers sent as they are made;
3. the ledger gets one row however the request ends: answered, refused with an OpenAI
   error, crashed, abandoned by the client, or cut off mid-stream (a stream's row is
   written as it starts, marked interrupted, and completed as it ends);
4. writing the row settles the reservation to the charged cost and frees the in-flight
   slot.

Routers and the realtime socket meter what was consumed into `call.metered`; nothing else
in the gateway writes the ledger or touches the limits' counters.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from accounts.models import ApiKey
from core.errors import OpenAIError, server_error
from gateway.catalog import ModelEntry
from gateway.pricing import cost_of
from gateway.providers.attempts import AttemptLog, start_attempt_log
from quotas.admission import Admission, admit
from usage import ledger
from usage.ledger import Metered
from usage.models import spent_this_month

logger = logging.getLogger(__name__)

# What a stream's error hook may send after the headers are gone (None: just end the body).
ErrorTail = Callable[[OpenAIError], bytes | None]
# Measures into call.metered what a request made before it was cut short.
Meter = Callable[[], Awaitable[None]]


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, OpenAIError):
        return exc.status
    return 200 if isinstance(exc, asyncio.CancelledError) else 500


@dataclass
class MeteredCall:
    """One request's bill in the making: who pays, for which model, and what it consumed."""

    api_key: ApiKey
    entry: ModelEntry
    endpoint: str
    request_id: str
    metered: Metered = field(default_factory=Metered)
    started: float = field(default_factory=time.monotonic)
    # Upstream retries and fallbacks append here; the row shows their count and the last.
    attempt_log: AttemptLog = field(init=False)
    admission: Admission = field(init=False, default_factory=Admission)
    # Only an admitted request is billed: one refused by its limits never reached a provider.
    admitted: bool = field(init=False, default=False)
    # The body is sent by `streaming()`, which bills when it ends (not `running()`).
    streamed: bool = field(init=False, default=False)
    # Measures what was made when a whole answer is cut short (see `running()`).
    measure: Meter | None = field(init=False, default=None)
    row_id: int | None = field(init=False, default=None)
    charged: Decimal | None = field(init=False, default=None)
    _opening: "asyncio.Future[int] | None" = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.attempt_log = start_attempt_log(team_id=self.api_key.team_id)

    @classmethod
    def for_request(cls, request: HttpRequest, entry: ModelEntry, endpoint: str) -> "MeteredCall":
        return cls(request.auth, entry, endpoint, request.request_id)

    @property
    def cost(self) -> Decimal:
        return cost_of(self.entry.pricing, self.metered)

    @property
    def finished(self) -> bool:
        return self.charged is not None

    async def admit(self, estimate: Metered) -> None:
        """Check the key's limits before a provider is called (raises the OpenAI 4xx).

        Admitted, the request holds a slot and a reservation until `finish()` settles them.
        """
        self.admission = await admit(
            self.api_key,
            self.entry.id,
            self.endpoint,
            cost_of(self.entry.pricing, estimate),
            spent_this_month,
        )
        self.admitted = True

    async def cover(self, estimate: Metered) -> None:
        """Raise the reservation to `estimate`'s cost once a better measure is known (the
        decoded length of an upload); 429 insufficient_quota if the budget cannot hold it.
        """
        try:
            await self.admission.cover(cost_of(self.entry.pricing, estimate))
        except OpenAIError:
            self.admitted = False  # refused as at admission: its counters are given back
            raise

    def open_row(self) -> None:
        """For a request admitted (and covered) that will answer as a stream: start
        writing its row, marked interrupted, now, beside the provider's first work, rather
        than between the provider's first piece and the client's first byte. The write
        starts before this returns, so it runs while the provider's request is made.
        `streaming()` and `finish()` wait for it."""
        if self._opening is None and self.row_id is None:
            self._opening = ledger.start_record(self._entry(ledger.INTERRUPTED, Decimal(0)))

    def respond(self, response: HttpResponseBase) -> HttpResponseBase:
        """The response with the key's rate-limit headers (when it has a rate limit) and
        the model's notice (a retired model's successor served it: `Warning`)."""
        for name, value in self.headers.items():
            response.setdefault(name, value)
        return response

    @property
    def headers(self) -> dict[str, str]:
        return {**self.admission.headers, **self.entry.notice_headers}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["MeteredCall"]:
        """Run a whole answer's provider work; the row is written however it ends.

        The block admits the request, runs the provider and meters into `metered`; it is
        recorded as 200 when the block ends, unless it handed its body to `streaming()`.
        If the block fails or the client leaves, `measure` (if the block set one) first
        measures what was made, and the failure is recorded: an OpenAI error at its status,
        a crash as 500, a departed client as 200 (it is billed for what was made).
        """
        try:
            yield self
        except BaseException as exc:
            if self.measure is not None and not self.finished:
                await self.measure()
            if isinstance(exc, OpenAIError):
                exc.headers = {**self.headers, **exc.headers}
            await self.finish(_status_of(exc))
            raise
        if not self.streamed:
            await self.finish(200)

    async def streaming(
        self,
        body: AsyncIterator[bytes],
        content_type: str,
        on_error: ErrorTail = lambda error: None,
    ) -> StreamingHttpResponse:
        """A response that sends `body` as it is made and bills when it ends.

        The row is written now (or was, by `open_row()`), marked interrupted (a worker
        killed mid-stream leaves that trace), and completed when the body ends: finished,
        failed (`on_error` may send a last event, since the headers are gone) or abandoned
        by the client.
        """
        if self._opening is not None:
            # Shielded: a client that leaves now must not cancel a write that may already
            # have happened (its row id would be lost, and the row written twice).
            self.row_id = await asyncio.shield(self._opening)
        else:
            await self.mark_started()
        self.streamed = True
        response = StreamingHttpResponse(self._billed(body, on_error), content_type=content_type)
        if content_type == "text/event-stream":
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
        return self.respond(response)

    async def _billed(
        self, body: AsyncIterator[bytes], on_error: ErrorTail
    ) -> AsyncIterator[bytes]:
        status = 200
        try:
            async for chunk in body:
                yield chunk
        except Exception as exc:
            if not isinstance(exc, OpenAIError):
                logger.exception("%s failed mid-stream", self.endpoint)
            error = exc if isinstance(exc, OpenAIError) else server_error()
            status = error.status
            if (tail := on_error(error)) is not None:
                yield tail
        finally:
            # Also reached when the client disconnects (the response task is cancelled at a
            # yield): closing the body stops the provider before its next piece.
            await body.aclose()
            await self.finish(status)

    async def finish(self, status: int) -> Decimal:
        """Write the row (once) and settle the admission; returns the cost charged.

        Shielded so a client that leaves mid-stream (which cancels the response task)
        cannot cancel the write that bills what was already produced.
        """
        return await asyncio.shield(self._record(status))

    async def _record(self, status: int) -> Decimal:
        if self.charged is not None:
            return self.charged
        if not self.admitted:
            self.charged = Decimal(0)
            return self.charged
        if self._opening is not None and self.row_id is None:
            # Not written (failed or cancelled): the row is inserted below instead.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                self.row_id = await self._opening
        charged = self.cost if 0 < status < 400 else Decimal(0)
        try:
            self.row_id = await ledger.record(self._entry(status, charged), row_id=self.row_id)
        except BaseException:
            await self.admission.settle(Decimal(0))
            raise
        self.charged = charged
        await self.admission.settle(charged)
        return charged

    async def mark_started(self) -> None:
        """Write the row now, marked interrupted; `finish()` completes it. A stream (or a
        realtime response) can outlive its process: the request then stays in the ledger."""
        self.row_id = await ledger.record(self._entry(ledger.INTERRUPTED, Decimal(0)))

    def _entry(self, status: int, cost: Decimal) -> ledger.LedgerEntry:
        return ledger.LedgerEntry(
            api_key_id=self.api_key.pk,
            team_id=self.api_key.team_id,
            model=self.entry.id,
            endpoint=self.endpoint,
            status_code=status,
            request_id=self.request_id,
            provider=self.attempt_log.final_provider or self.entry.provider,
            attempts=max(1, self.attempt_log.count),
            cost=cost,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            metered=self.metered,
        )
