"""Atomic counters shared by every worker: Redis when REDIS_URL is set, else the database.

Both do the same four things, each atomically: count a hit in a window, take a slot up to
a limit, give a slot back, and reserve an amount against several budgets at once (all or
nothing). Budgets open at what the ledger already holds for the month, so a new counter
(or a flushed Redis) starts from the truth.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from core.hot_path_db import run_query
from quotas.models import Counter

logger = logging.getLogger(__name__)
# What a Redis outage raises: the limiter falls back to the database on these.
REDIS_ERRORS = (OSError, RedisError)


@dataclass(frozen=True)
class Budget:
    name: str
    limit: int  # micro-dollars
    scope: str  # "key" or "team", for the error message
    opening: Callable[[], int]  # what the ledger holds already (sync, runs on a DB thread)


class Counters(Protocol):
    async def hit(self, name: str, ttl: int) -> int: ...
    async def acquire(self, name: str, limit: int, ttl: int) -> bool: ...
    async def release(self, name: str) -> None: ...
    async def reserve(self, budgets: list[Budget], amount: int, ttl: int) -> Budget | None: ...
    async def adjust(self, names: list[str], delta: int) -> None: ...


# --- database ------------------------------------------------------------------------------


def _locked(name: str, ttl: int, opening: Callable[[], int] | None = None) -> Counter:
    """The counter row, locked for this transaction (created or restarted if need be)."""
    now = timezone.now()
    counter = Counter.objects.select_for_update().filter(name=name).first()
    if counter is None:
        try:
            with transaction.atomic():
                value = opening() if opening else 0
                return Counter.objects.create(
                    name=name, value=value, expires_at=now + timedelta(seconds=ttl)
                )
        except IntegrityError:  # another worker made it first
            counter = Counter.objects.select_for_update().get(name=name)
    if counter.expires_at <= now:
        counter.value = opening() if opening else 0
        counter.expires_at = now + timedelta(seconds=ttl)
    return counter


def _hit(name: str, ttl: int) -> int:
    with transaction.atomic():
        counter = _locked(name, ttl)
        counter.value += 1
        counter.save(update_fields=["value", "expires_at"])
    return counter.value


def _acquire(name: str, limit: int, ttl: int) -> bool:
    with transaction.atomic():
        counter = _locked(name, ttl)
        if counter.value >= limit:
            return False
        counter.value += 1
        counter.expires_at = timezone.now() + timedelta(seconds=ttl)
        counter.save(update_fields=["value", "expires_at"])
    return True


def _release(name: str) -> None:
    with transaction.atomic():
        counter = Counter.objects.select_for_update().filter(name=name).first()
        if counter is not None and counter.value > 0:
            counter.value -= 1
            counter.save(update_fields=["value"])


def _reserve(budgets: list[Budget], amount: int, ttl: int) -> Budget | None:
    with transaction.atomic():
        counters = [(budget, _locked(budget.name, ttl, budget.opening)) for budget in budgets]
        for budget, counter in counters:
            if counter.value >= budget.limit or counter.value + amount > budget.limit:
                return budget
        for _, counter in counters:
            counter.value += amount
            counter.save(update_fields=["value", "expires_at"])
    return None


def _adjust(names: list[str], delta: int) -> None:
    from django.db.models import F

    Counter.objects.filter(name__in=names).update(value=F("value") + delta)


def _forget_expired() -> None:
    Counter.objects.filter(expires_at__lte=timezone.now()).delete()


class DatabaseCounters:
    """Row locks on PostgreSQL; on SQLite, IMMEDIATE transactions serialize writers."""

    _last_sweep = 0.0

    async def hit(self, name: str, ttl: int) -> int:
        if time.monotonic() - DatabaseCounters._last_sweep > 300:  # old minute windows
            DatabaseCounters._last_sweep = time.monotonic()
            await run_query(_forget_expired)
        return await run_query(_hit, name, ttl)

    async def acquire(self, name: str, limit: int, ttl: int) -> bool:
        return await run_query(_acquire, name, limit, ttl)

    async def release(self, name: str) -> None:
        await run_query(_release, name)

    async def reserve(self, budgets: list[Budget], amount: int, ttl: int) -> Budget | None:
        return await run_query(_reserve, budgets, amount, ttl)

    async def adjust(self, names: list[str], delta: int) -> None:
        await run_query(_adjust, names, delta)


# --- redis -----------------------------------------------------------------------------------

HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
ACQUIRE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
RELEASE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""
RESERVE = """
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local value = tonumber(redis.call('GET', key) or '0')
  local limit = tonumber(ARGV[i + 1])
  if value >= limit or value + amount > limit then return i end
end
for _, key in ipairs(KEYS) do redis.call('INCRBY', key, amount) end
return 0
"""
PREFIX = "arouter:limits:"


class RedisCounters:
    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[asyncio.AbstractEventLoop, object] = {}

    def _redis(self):
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = redis.Redis.from_url(
                self.url, socket_connect_timeout=0.5, socket_timeout=1
            )
        return self._clients[loop]

    async def hit(self, name: str, ttl: int) -> int:
        return int(await self._redis().eval(HIT, 1, PREFIX + name, ttl))

    async def acquire(self, name: str, limit: int, ttl: int) -> bool:
        return bool(await self._redis().eval(ACQUIRE, 1, PREFIX + name, limit, ttl))

    async def release(self, name: str) -> None:
        await self._redis().eval(RELEASE, 1, PREFIX + name)

    async def reserve(self, budgets: list[Budget], amount: int, ttl: int) -> Budget | None:
        client = self._redis()
        keys = [PREFIX + budget.name for budget in budgets]
        for key, budget in zip(keys, budgets, strict=True):
            if not await client.exists(key):
                await client.set(key, await run_query(budget.opening), nx=True, ex=ttl)
        rejected = int(
            await client.eval(RESERVE, len(keys), *keys, amount, *(b.limit for b in budgets))
        )
        return budgets[rejected - 1] if rejected else None

    async def adjust(self, names: list[str], delta: int) -> None:
        async with self._redis().pipeline(transaction=True) as pipe:
            for name in names:
                pipe.incrby(PREFIX + name, delta)
            await pipe.execute()


# --- choosing --------------------------------------------------------------------------------

DATABASE = DatabaseCounters()
_redis_counters: RedisCounters | None = None
_redis_down_until = 0.0
RETRY_REDIS_AFTER = 30.0


def redis_counters() -> RedisCounters | None:
    """The Redis counters, unless there is no Redis or it failed in the last 30 s."""
    global _redis_counters
    if not settings.REDIS_URL or time.monotonic() < _redis_down_until:
        return None
    if _redis_counters is None or _redis_counters.url != settings.REDIS_URL:
        _redis_counters = RedisCounters(settings.REDIS_URL)
    return _redis_counters


def redis_failed(exc: Exception) -> None:
    global _redis_down_until
    if time.monotonic() >= _redis_down_until:
        logger.warning(
            "Redis is unavailable for limits (%s); using the database limiter for %.0f s",
            type(exc).__name__,
            RETRY_REDIS_AFTER,
        )
    _redis_down_until = time.monotonic() + RETRY_REDIS_AFTER
