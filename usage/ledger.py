"""Writing the ledger: one plain entry per request, one function to write it.

The gateway decides what a request consumed and what it costs; this module only stores
it. A stream's row is written as the stream starts, marked interrupted, and rewritten with
the final entry when it ends (`row_id`), so a process that dies mid-stream leaves a trace.
"""

import asyncio
import functools
from dataclasses import dataclass, fields
from decimal import Decimal

from django.db import connection, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.utils import timezone

from core.hot_path_db import start_query
from core.loop_sqlite import loop_writer, write_now
from usage.models import INTERRUPTED, UsageRecord

__all__ = ["INTERRUPTED", "LedgerEntry", "Metered", "record", "start_record"]


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


@dataclass(frozen=True)
class _Statements:
    """A row's INSERT (the entry's columns, then `created_at`) and its UPDATE (the entry's
    columns: a rewritten row keeps its `created_at`), in the driver's own parameter style,
    with the entry's columns in order; `returning` fetches a new row's id where the database
    can (else the cursor's `lastrowid` has it)."""

    insert: str
    returning: str
    update: str
    # (attname, the field when its value needs the field's preparation for this database)
    columns: tuple[tuple[str, Field | None], ...]
    created_at: Field


# Values the driver takes as the dataclasses hold them; decimals and datetimes are
# prepared by their fields, as the ORM prepares them (SQLite stores both as text).
_PASSED_AS_IS = (models.IntegerField, models.FloatField, models.CharField, models.ForeignKey)
_METERED = frozenset(f.name for f in fields(Metered))


@functools.cache
def _statements(vendor: str) -> _Statements:
    """Built once per database vendor."""
    meta, quote = UsageRecord._meta, connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    entry_columns = {f.name for f in fields(LedgerEntry)} - {"metered"}
    entry_columns |= {f.name for f in fields(Metered)}
    updated = [field for field in meta.concrete_fields if field.attname in entry_columns]
    created_at = meta.get_field("created_at")
    mark = "?" if vendor == "sqlite" else "%s"  # sqlite3's paramstyle is qmark; psycopg's is format
    names = ", ".join(quote(field.column) for field in [*updated, created_at])
    assignments = ", ".join(f"{quote(field.column)} = {mark}" for field in updated)
    columns = tuple(
        (field.attname, None if isinstance(field, _PASSED_AS_IS) else field) for field in updated
    )
    can_return = connection.features.can_return_columns_from_insert
    return _Statements(
        insert=f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * (len(updated) + 1))})",
        returning=f" RETURNING {pk}" if can_return else "",
        update=f"UPDATE {table} SET {assignments} WHERE {pk} = {mark}",
        columns=columns,
        created_at=created_at,
    )


def _statement(
    entry: LedgerEntry, row_id: int | None, database: BaseDatabaseWrapper
) -> tuple[_Statements, str, list]:
    """The statements for `database`, and the one that writes `entry` (as row `row_id`, or a
    new row without its RETURNING clause) with its parameters."""
    statements = _statements(database.vendor)
    values = []
    for attname, field in statements.columns:
        value = getattr(entry.metered if attname in _METERED else entry, attname)
        values.append(value if field is None else field.get_db_prep_save(value, database))
    if row_id is not None:
        return statements, statements.update, [*values, row_id]
    created = statements.created_at.get_db_prep_save(timezone.now(), database)
    return statements, statements.insert, [*values, created]


def _write(entry: LedgerEntry, row_id: int | None) -> int:
    # The driver's cursor, not the ORM's: measured in a serving process, the ORM's field
    # preparation and its cursor wrapper (SQL rewriting, query-logging hooks) were a third
    # of the write, which every request waits for. Errors still arrive as Django's
    # (wrap_database_errors), as the kept threads' retry and the API's 503 expect them.
    # UsageRecord has no save signals to send.
    statements, sql, params = _statement(entry, row_id, connection)
    with connection.wrap_database_errors:
        connection.ensure_connection()
        cursor = connection.connection.cursor()
        try:
            if row_id is not None:
                cursor.execute(sql, params)
                return row_id
            cursor.execute(sql + statements.returning, params)
            return cursor.fetchone()[0] if statements.returning else cursor.lastrowid
        finally:
            cursor.close()


def _write_on_loop(entry: LedgerEntry, row_id: int | None) -> int | None:
    """Write the row from the event loop's thread if that needs no wait (see
    `core.loop_sqlite`); None when it was not written."""
    if (writer := loop_writer()) is None:
        return None
    _, sql, params = _statement(entry, row_id, writer.wrapper)
    new_id = write_now(writer, sql, params)
    return None if new_id is None else (row_id if row_id is not None else new_id)


def start_record(entry: LedgerEntry, row_id: int | None = None) -> "asyncio.Future[int]":
    """`record()`, started at once on a kept thread; the future gives the row's id."""
    return start_query(_write, entry, row_id)


async def record(entry: LedgerEntry, row_id: int | None = None) -> int:
    """Insert `entry` as a new row, or rewrite row `row_id` with it; returns the row's id.

    On SQLite the row is written at once from the loop's own thread when no other writer
    holds the database (a whole answer waits for its row, and the hop to a kept thread cost
    more than the write); otherwise, as on PostgreSQL, on a kept thread."""
    written = _write_on_loop(entry, row_id)
    return written if written is not None else await start_record(entry, row_id)
