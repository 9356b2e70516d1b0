"""Writing the ledger: one atomic insert per request, whatever way the request ended."""

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.http import HttpRequest

from arouter.hot_path_db import run_query
from gateway.catalog import ModelEntry
from gateway.providers.attempts import AttemptLog, start_attempt_log
from usage.models import UsageRecord
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

    def __post_init__(self) -> None:
        team_id = getattr(getattr(self.request, "auth", None), "team_id", None)
        self.attempt_log = start_attempt_log(team_id=team_id)

    @property
    def cost(self) -> Decimal:
        return cost_of(self.entry.pricing, self.metered)

    async def record(self, status_code: int) -> UsageRecord:
        """Insert the ledger row; failures are recorded at no cost.

        Shielded so a client that leaves mid-stream (which cancels the response task)
        cannot cancel the write that bills what was already produced.
        """
        return await asyncio.shield(self._insert(status_code))

    async def _insert(self, status_code: int) -> UsageRecord:
        api_key = self.request.auth
        succeeded = status_code < 400
        return await run_query(
            UsageRecord.objects.create,
            api_key=api_key,
            team_id=api_key.team_id,
            model=self.entry.id,
            endpoint=self.endpoint,
            status_code=status_code,
            request_id=getattr(self.request, "request_id", ""),
            provider=self.attempt_log.final_provider or self.entry.provider,
            attempts=max(1, self.attempt_log.count),
            cost=self.cost if succeeded else Decimal(0),
            latency_ms=int((time.monotonic() - self.started) * 1000),
            **self.metered.as_fields(),
        )
