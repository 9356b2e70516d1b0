"""The usage ledger's one writer: a plain entry in, a row out."""

import asyncio
import shutil
import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from core import loop_sqlite
from usage import ledger
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def _entry(api_key, **changes) -> ledger.LedgerEntry:
    fields = {
        "api_key_id": api_key.pk,
        "team_id": api_key.team_id,
        "model": "openai/whisper-large-v3",
        "endpoint": "/v1/audio/transcriptions",
        "status_code": 200,
        "request_id": "req_test",
        "provider": "whisper",
        "attempts": 1,
        "cost": Decimal("0.006"),
        "latency_ms": 12,
        "metered": ledger.Metered(audio_seconds_in=60),
    }
    return ledger.LedgerEntry(**{**fields, **changes})


async def test_an_entry_becomes_one_row(api_key):
    row_id = await ledger.record(_entry(api_key.api_key))
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert (stored.api_key_id, stored.team_id) == (api_key.api_key.pk, api_key.api_key.team_id)
    assert (stored.model, stored.endpoint) == (
        "openai/whisper-large-v3",
        "/v1/audio/transcriptions",
    )
    assert (stored.status_code, stored.request_id, stored.provider) == (200, "req_test", "whisper")
    assert (stored.cost, stored.audio_seconds_in, stored.latency_ms) == (Decimal("0.006"), 60, 12)


async def test_a_row_id_rewrites_that_row(api_key):
    row_id = await ledger.record(_entry(api_key.api_key, status_code=ledger.INTERRUPTED))
    again = await ledger.record(_entry(api_key.api_key, cost=Decimal("0.5")), row_id=row_id)
    assert again == row_id
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert (stored.status_code, stored.cost) == (200, Decimal("0.5"))
    assert await UsageRecord.objects.acount() == 1


async def test_a_rewritten_row_keeps_when_it_began(api_key):
    row_id = await ledger.record(_entry(api_key.api_key, status_code=ledger.INTERRUPTED))
    began = (await UsageRecord.objects.aget(pk=row_id)).created_at
    await ledger.record(_entry(api_key.api_key, latency_ms=900), row_id=row_id)
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert (stored.created_at, stored.latency_ms) == (began, 900)


async def test_every_quantity_is_stored_as_given(api_key):
    metered = ledger.Metered(
        audio_seconds_in=1.25,
        audio_seconds_out=2.5,
        characters=44,
        text_tokens_in=7,
        text_tokens_out=9,
        audio_tokens_in=13,
        audio_tokens_out=25,
    )
    cost = Decimal("0.00000123")  # the column's smallest step
    row_id = await ledger.record(_entry(api_key.api_key, metered=metered, cost=cost, attempts=3))
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert {name: getattr(stored, name) for name in metered.as_fields()} == metered.as_fields()
    assert (stored.cost, stored.attempts) == (cost, 3)
    assert stored.created_at.tzinfo is not None


# --- SQLite: the row written from the event loop's own thread when nothing holds the lock ---

on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's loop writer")


def _loop_ran_meanwhile() -> asyncio.Event:
    """An event the loop sets at its next turn: set once a caller has yielded to it."""
    ran = asyncio.Event()
    asyncio.get_running_loop().call_soon(ran.set)
    return ran


@on_sqlite
async def test_a_free_database_takes_the_row_without_the_loop_yielding(api_key):
    ran = _loop_ran_meanwhile()
    row_id = await ledger.record(_entry(api_key.api_key))
    assert not ran.is_set()  # written on the loop's thread: no hop to a kept one and back
    assert await UsageRecord.objects.filter(pk=row_id).acount() == 1


@on_sqlite
async def test_a_held_lock_sends_the_row_to_a_kept_thread_which_waits_for_it(api_key):
    """Another writer holds the database: the loop does not wait for it (nor fail); a kept
    thread writes the row, once, when the lock is released."""
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    released = asyncio.Event()

    def release() -> None:
        holder.execute("COMMIT")
        released.set()

    asyncio.get_running_loop().call_later(0.3, release)
    try:
        row_id = await ledger.record(_entry(api_key.api_key, request_id="req_locked"))
    finally:
        if not released.is_set():
            holder.execute("ROLLBACK")
        holder.close()
    assert released.is_set()
    assert await UsageRecord.objects.filter(request_id="req_locked").acount() == 1
    assert (await UsageRecord.objects.aget(pk=row_id)).request_id == "req_locked"


def _rows_in_database_file(request_id: str, copy: Path) -> int:
    """Rows with `request_id` in the database file itself, leaving out its write-ahead log:
    the rows some checkpoint has copied there."""
    shutil.copyfile(connection.settings_dict["NAME"], copy)
    with closing(sqlite3.connect(copy)) as database:
        query = "SELECT count(*) FROM usage_usagerecord WHERE request_id = ?"
        return database.execute(query, [request_id]).fetchone()[0]


@on_sqlite
async def test_the_loop_leaves_checkpoints_to_a_kept_thread(api_key, tmp_path):
    """The loop's connection never checkpoints the write-ahead log (milliseconds of copying
    and syncing, which SQLite would otherwise do every ~120 of these rows): every
    CHECKPOINT_EVERY rows, a kept thread does."""
    entry = _entry(api_key.api_key, request_id="req_checkpointed")
    with closing(sqlite3.connect(connection.settings_dict["NAME"])) as database:
        database.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the schema, into the file
    for _ in range(loop_sqlite.rows_until_checkpoint() - 1):
        await ledger.record(entry)
    await asyncio.sleep(0.3)
    assert _rows_in_database_file("req_checkpointed", tmp_path / "copy.sqlite3") == 0
    await ledger.record(entry)
    await asyncio.sleep(0.3)  # the kept thread's checkpoint
    written = await UsageRecord.objects.filter(request_id="req_checkpointed").acount()
    assert _rows_in_database_file("req_checkpointed", tmp_path / "copy.sqlite3") == written


@pytest.mark.skipif(connection.vendor == "sqlite", reason="for databases over a network")
async def test_a_database_server_is_written_from_a_kept_thread(api_key):
    ran = _loop_ran_meanwhile()
    await ledger.record(_entry(api_key.api_key))
    assert ran.is_set()  # the loop went on while a kept thread made the round trip


def test_the_ledgers_table_has_no_index_the_composites_make_redundant():
    """Each row writes every index: the foreign keys' own indexes are gone, as the
    (team, -created_at) and (api_key, -created_at) indexes serve lookups by them."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "usage_usagerecord")
    indexed = sorted(
        tuple(details["columns"])
        for details in constraints.values()
        if details["index"] and not details["primary_key"]
    )
    # PostgreSQL adds a pattern-matching (LIKE) index for an indexed varchar.
    assert sorted(set(indexed)) == [
        ("api_key_id", "created_at"),
        ("request_id",),
        ("team_id", "created_at"),
    ]
