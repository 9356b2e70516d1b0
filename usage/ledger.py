"""Writing the ledger: one plain entry per request, one function to write it.

The gateway decides what a request consumed and what it costs; this module only stores
it. A stream's row is written as the stream starts, marked interrupted, and rewritten with
the final entry when it ends (`row_id`), so a process that dies mid-stream leaves a trace.
"""

import functools
from dataclasses import dataclass, fields
from decimal import Decimal

from django.db import connection
from django.db.models import Field
from django.utils import timezone

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


@functools.cache
def _statements(vendor: str) -> tuple[list[Field], str, list[Field], str]:
    """A row's INSERT (every column but the id, returning it where the database can) and
    its UPDATE (the entry's columns: a rewritten row keeps its `created_at`), each with
    its fields in order; built once per database vendor."""
    meta, quote = UsageRecord._meta, connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    written = [field for field in meta.concrete_fields if not field.primary_key]
    entry_columns = {f.name for f in fields(LedgerEntry)} - {"metered"}
    entry_columns |= {f.name for f in fields(Metered)}
    updated = [field for field in written if field.attname in entry_columns]
    names = ", ".join(quote(field.column) for field in written)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(written))})"
    if connection.features.can_return_columns_from_insert:
        insert += f" RETURNING {pk}"
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in updated)
    return written, insert, updated, f"UPDATE {table} SET {assignments} WHERE {pk} = %s"


def _prepared(columns: list[Field], values: dict) -> list:
    return [field.get_db_prep_save(values[field.attname], connection) for field in columns]


def _write(entry: LedgerEntry, row_id: int | None) -> int:
    # Our own statement rather than Model.save(): the ORM's save machinery was about a
    # tenth of a proxied request's time. Each value is prepared by its field, as the ORM
    # prepares it; UsageRecord has no save signals to send.
    written, insert, updated, update = _statements(connection.vendor)
    values = entry.as_fields()
    with connection.cursor() as cursor:
        if row_id is not None:
            cursor.execute(update, [*_prepared(updated, values), row_id])
            return row_id
        cursor.execute(insert, _prepared(written, {**values, "created_at": timezone.now()}))
        if connection.features.can_return_columns_from_insert:
            return cursor.fetchone()[0]
        return cursor.lastrowid


async def record(entry: LedgerEntry, row_id: int | None = None) -> int:
    """Insert `entry` as a new row, or rewrite row `row_id` with it; returns the row's id."""
    return await run_query(_write, entry, row_id)
