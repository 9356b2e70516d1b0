"""Writing the ledger: one row per request, whatever way the request ended.

Most requests insert their row once, at the end. Streams write it as they start, marked
interrupted, and complete it at the end, so a process that dies mid-stream leaves a trace.
"""

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.http import HttpRequest

from arouter.hot_path_db import run_query
from gateway.catalog import ModelEntry
from gateway.providers.attempts import AttemptLog, start_attempt_log
from limits.admission import Admission, admit
from usage.models import INTERRUPTED, UsageRecord
from usage.pricing import Metered, cost_of


@dataclass
class Charge:
    """One request's bill in the making: the model it used and what it consumed."""

    request: HttpRequest
    entry: ModelEntry
    endpoint: str
    metered: Metered = field(default_factory=Metered)
    started: float = field(default_factory=time.monotonic)
    # Upstream retries and fallbacks append here; the row shows their count and the last.
    attempt_log: AttemptLog = field(init=False)

    admission: Admission = field(init=False, default_factory=Admission)
    # The row written when a stream started (see open_stream), completed by record().
    provisional_id: int | None = field(init=False, default=None)
    # The finished row: a request has one, so recording again (an error path that runs
    # after the row was written) returns it instead of billing twice.
    recorded: UsageRecord | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        team_id = getattr(getattr(self.request, "auth", None), "team_id", None)
        self.attempt_log = start_attempt_log(team_id=team_id)

    async def admit(self, estimate: Metered) -> None:
        """Check the key's limits before a provider is called (raises the OpenAI 4xx).

        Admitted, the request holds a slot and a reservation until `record()` settles them;
        its rate-limit headers go out on the response.
        """
        self.admission = await admit(
            self.request.auth, self.entry.id, self.endpoint, cost_of(self.entry.pricing, estimate)
        )
        if self.admission.headers:
            self.request.ratelimit_headers = self.admission.headers

    @property
    def cost(self) -> Decimal:
        return cost_of(self.entry.pricing, self.metered)

    async def record(self, status_code: int) -> UsageRecord:
        """Insert the ledger row; failures are recorded at no cost.

        Shielded so a client that leaves mid-stream (which cancels the response task)
        cannot cancel the write that bills what was already produced.
        """
        return await asyncio.shield(self._insert_and_settle(status_code))

    async def _insert_and_settle(self, status_code: int) -> UsageRecord:
        if self.recorded is not None:
            return self.recorded
        try:
            self.recorded = await self._insert(status_code)
        except BaseException:
            await self.admission.settle(Decimal(0))
            raise
        await self.admission.settle(self.recorded.cost)
        return self.recorded

    async def open_stream(self) -> None:
        """Write the row as a stream starts, marked interrupted; `record()` completes it.

        A stream can outlive its process (a worker killed mid-stream runs no cleanup):
        the request then stays in the ledger as interrupted rather than vanishing.
        """
        row = await run_query(UsageRecord.objects.create, **self._fields(INTERRUPTED))
        self.provisional_id = row.pk

    def _fields(self, status_code: int) -> dict:
        api_key = self.request.auth
        succeeded = 0 < status_code < 400
        return {
            "api_key": api_key,
            "team_id": api_key.team_id,
            "model": self.entry.id,
            "endpoint": self.endpoint,
            "status_code": status_code,
            "request_id": getattr(self.request, "request_id", ""),
            "provider": self.attempt_log.final_provider or self.entry.provider,
            "attempts": max(1, self.attempt_log.count),
            "cost": self.cost if succeeded else Decimal(0),
            "latency_ms": int((time.monotonic() - self.started) * 1000),
            **self.metered.as_fields(),
        }

    async def _insert(self, status_code: int) -> UsageRecord:
        fields = self._fields(status_code)
        if self.provisional_id is None:
            return await run_query(UsageRecord.objects.create, **fields)
        await run_query(UsageRecord.objects.filter(pk=self.provisional_id).update, **fields)
        return UsageRecord(pk=self.provisional_id, **fields)
