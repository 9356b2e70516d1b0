"""Writing the ledger: one plain entry per request, one function to write it.

The gateway decides what a request consumed and what it costs; this module only stores
it. A stream's row is written as the stream starts, marked interrupted, and rewritten with
the final entry when it ends (`row_id`), so a process that dies mid-stream leaves a trace.
"""

from dataclasses import dataclass, fields
from decimal import Decimal

from core.hot_path_db import run_query
from usage.models import INTERRUPTED, UsageRecord

__all__ = ["INTERRUPTED", "LedgerEntry", "Metered", "record"]


@dataclass
class Metered:
    """Quantities a request consumed, filled in while it runs (each is a ledger column)."""

    audio_seconds_in: float = 0.0
    audio_seconds_out: float = 0.0
    characters: int = 0
    text_tokens_in: int = 0
    text_tokens_out: int = 0
    audio_tokens_in: int = 0
    audio_tokens_out: int = 0

    def as_fields(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class LedgerEntry:
    api_key_id: int
    team_id: int
    model: str
    endpoint: str
    status_code: int  # INTERRUPTED while a stream runs
    request_id: str
    provider: str
    attempts: int
    cost: Decimal
    latency_ms: int
    metered: Metered

    def as_fields(self) -> dict:
        columns = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "metered"}
        return {**columns, **self.metered.as_fields()}


def _write(entry: LedgerEntry, row_id: int | None) -> int:
    if row_id is None:
        return UsageRecord.objects.create(**entry.as_fields()).pk
    UsageRecord.objects.filter(pk=row_id).update(**entry.as_fields())
    return row_id


async def record(entry: LedgerEntry, row_id: int | None = None) -> int:
    """Insert `entry` as a new row, or rewrite row `row_id` with it; returns the row's id."""
    return await run_query(_write, entry, row_id)
