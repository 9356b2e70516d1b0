"""Admission: whether a request may reach a provider, decided before it does.

Per key: allowed endpoints and models, requests per minute, requests in flight; per key
and per team: a monthly budget. A request's cost is reserved from an estimate when it is
admitted, raised to what it will really cost as soon as that is known before a provider
runs (audio once decoded), and settled to what the ledger charged when it ends, so
concurrent requests can overspend a budget by at most one request's estimate. A key with
no limits costs nothing here: no query, no Redis round trip.
"""

import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey
from core.errors import model_not_found
from quotas import errors
from quotas.counters import (
    DATABASE,
    REDIS_ERRORS,
    Budget,
    Counters,
    redis_counters,
    redis_failed,
)

MICRO = Decimal(1_000_000)
MINUTE = 60
SLOT_TTL = 15 * 60  # a slot a dead worker never gave back frees itself after this
MONTH_TTL = 40 * 24 * 3600


def micro(amount: Decimal) -> int:
    return int((amount * MICRO).to_integral_value(rounding="ROUND_CEILING"))


class MonthlySpend(Protocol):
    """What the ledger holds for this billing month, for a key or a team (a synchronous
    query: a budget's counter opens at it)."""

    def __call__(self, *, api_key_id: int | None = None, team_id: int | None = None) -> Decimal: ...


def _budgets(api_key: ApiKey, spent: MonthlySpend) -> list[Budget]:
    month = timezone.now().strftime("%Y%m")
    budgets = []
    if api_key.monthly_budget_usd is not None:
        budgets.append(
            Budget(
                f"spend:key:{api_key.pk}:{month}",
                micro(api_key.monthly_budget_usd),
                "API key",
                lambda: micro(spent(api_key_id=api_key.pk)),
            )
        )
    team_budget = api_key.team.monthly_budget_usd
    if team_budget is not None:
        budgets.append(
            Budget(
                f"spend:team:{api_key.team_id}:{month}",
                micro(team_budget),
                "team",
                lambda: micro(spent(team_id=api_key.team_id)),
            )
        )
    return budgets


@dataclass
class Admission:
    """What an admitted request holds until it ends: a slot, a reservation, headers."""

    counters: Counters | None = None
    slot: str | None = None
    budgets: list[Budget] = field(default_factory=list)
    spend: list[str] = field(default_factory=list)
    reserved: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False

    async def settle(self, cost: Decimal) -> None:
        """Give the slot back and turn the reservation into the charged cost (once)."""
        if self.settled or self.counters is None:
            return
        self.settled = True
        try:
            if self.slot:
                await self.counters.release(self.slot)
            if self.spend and (delta := micro(cost) - self.reserved):
                await self.counters.adjust(self.spend, delta)
        except REDIS_ERRORS as exc:  # Redis went away: its counters expire
            redis_failed(exc)

    async def cover(self, cost: Decimal) -> None:
        """Reserve up to `cost` when the request turns out dearer than its estimate (its
        audio decodes longer than the container declared), before any provider runs.

        A budget that cannot take the difference refuses the request as admission would
        have: 429 insufficient_quota, its slot and reservation given back.
        """
        more = micro(cost) - self.reserved
        if self.settled or not self.spend or self.counters is None or more <= 0:
            return
        try:
            rejected = await self.counters.reserve(self.budgets, more, MONTH_TTL)
        except REDIS_ERRORS as exc:
            # Redis went away mid-request: this one goes on at its first estimate (the
            # next requests are admitted by the database) rather than failing.
            redis_failed(exc)
            return
        if rejected is not None:
            await self.settle(Decimal(0))
            raise errors.insufficient_quota(rejected.scope)
        self.reserved += more


def _window_headers(limit: int, used: int) -> dict[str, str]:
    reset = MINUTE - int(time.time()) % MINUTE
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(limit - used, 0)),
        "x-ratelimit-reset-requests": f"{reset}s",
    }


async def _admit_with(
    counters: Counters, api_key: ApiKey, budgets: list[Budget], estimate: int
) -> Admission:
    admission = Admission(counters)
    if limit := api_key.requests_per_minute:
        window = int(time.time()) // MINUTE
        used = await counters.hit(f"rpm:{api_key.pk}:{window}", MINUTE + 1)
        admission.headers = _window_headers(limit, used)
        if used > limit:
            reset = admission.headers["x-ratelimit-reset-requests"]
            raise errors.requests_limited(
                f"Rate limit reached for this API key on requests per min (RPM): Limit "
                f"{limit}, Used {limit}, Requested 1. Please try again in {reset}.",
                {**admission.headers, "retry-after": reset.rstrip("s")},
            )
    if limit := api_key.max_concurrent_requests:
        slot = f"inflight:{api_key.pk}"
        if not await counters.acquire(slot, limit, SLOT_TTL):
            raise errors.requests_limited(
                f"Too many concurrent requests for this API key: limit {limit}. "
                "Please try again when one of them has finished.",
                {**admission.headers, "retry-after": "1"},
            )
        admission.slot = slot
    if budgets:
        rejected = await counters.reserve(budgets, estimate, MONTH_TTL)
        if rejected is not None:
            await admission.settle(Decimal(0))
            raise errors.insufficient_quota(rejected.scope)
        admission.budgets = budgets
        admission.spend = [budget.name for budget in budgets]
        admission.reserved = estimate
    return admission


async def admit(
    api_key: ApiKey, model_id: str, endpoint: str, estimate: Decimal, spent: MonthlySpend
) -> Admission:
    """Admit a request for `model_id` on `endpoint` expected to cost about `estimate`;
    budgets that have no counter yet open at `spent`."""
    if api_key.allowed_endpoints and endpoint not in api_key.allowed_endpoints:
        raise errors.endpoint_forbidden(endpoint)
    if api_key.allowed_models and model_id not in api_key.allowed_models:
        raise model_not_found(model_id)
    budgets = _budgets(api_key, spent)
    if not (api_key.requests_per_minute or api_key.max_concurrent_requests or budgets):
        return Admission()
    amount = micro(estimate)
    if (redis := redis_counters()) is not None:
        try:
            return await _admit_with(redis, api_key, budgets, amount)
        except REDIS_ERRORS as exc:
            redis_failed(exc)
    return await _admit_with(DATABASE, api_key, budgets, amount)


def has_budget(api_key: ApiKey) -> bool:
    """Whether a monthly budget (the key's or its team's) applies: only then is a request's
    cost worth estimating closely (audio probed and measured) before it is admitted."""
    return api_key.monthly_budget_usd is not None or api_key.team.monthly_budget_usd is not None


def estimated_audio_seconds(upload_bytes: int, declared: float | None = None) -> float:
    """An upload's length before decoding, in whole seconds (at least one): what its
    container declares, else a guess from its size at 16 kB/s (128 kbit/s, a typical mp3).

    Only a first estimate: silence compresses to almost nothing and a header can lie, so
    the reservation is raised to the decoded duration before an engine runs. Nothing
    longer than AROUTER_MAX_AUDIO_SECONDS is ever decoded, so nothing longer is reserved.
    """
    seconds = declared if declared is not None else upload_bytes / 16_000
    return float(max(1, math.ceil(min(seconds, settings.AROUTER_MAX_AUDIO_SECONDS))))
