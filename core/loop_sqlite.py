"""One-statement SQLite writes on the event loop's own thread, when they need not wait.

A small autocommit write to SQLite takes about a tenth of a millisecond. Handing it to a
kept thread (`hot_path_db`) and being woken with its answer took three times that in a
serving process, and every whole API answer waits for its ledger row. So where the
database is SQLite, the loop writes such a row itself through a connection of its own that
never waits for a lock: when another writer holds the database, or anything else goes
wrong, nothing has been written and the caller takes the kept-thread path, which waits
for the lock and reports errors as Django's.

That connection does not checkpoint the write-ahead log (a checkpoint copies pages into
the database file and syncs it: milliseconds the loop must not spend); every
`CHECKPOINT_EVERY` rows it writes, a kept thread is asked to.

Not used with PostgreSQL (a write is a network round trip the loop must not block on),
nor with `AROUTER_DB_THREADS=0`, where a test's rows live in its own uncommitted
transaction, which only its thread's connection can see.
"""

import logging
import sqlite3
import threading
from collections.abc import Sequence

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from core.hot_path_db import start_query

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY = 200  # rows: SQLite's own default is a checkpoint per 1,000 log pages

_per_thread = threading.local()
_rows_since_checkpoint = 0


class _LoopConnection:
    """A thread's connection to the default SQLite database (the file it was opened on),
    and an unconnected Django wrapper for preparing values as that database stores them."""

    def __init__(self, settings_dict: dict) -> None:
        self.path = str(settings_dict["NAME"])
        self.wrapper: BaseDatabaseWrapper = connections.create_connection(DEFAULT_DB_ALIAS)
        # Autocommit (each statement its own transaction), and no wait for a lock (timeout 0).
        self.sqlite = sqlite3.connect(
            self.path, timeout=0, isolation_level=None, check_same_thread=False, uri=True
        )
        self.sqlite.execute("PRAGMA foreign_keys = ON")
        for pragma in settings_dict["OPTIONS"].get("init_command", "").split(";"):
            if pragma := pragma.strip():
                self.sqlite.execute(pragma)
        self.sqlite.execute("PRAGMA wal_autocheckpoint = 0")


def loop_writer() -> _LoopConnection | None:
    """This thread's connection for writes that must not wait, or None where there is none
    (PostgreSQL, or no kept threads)."""
    settings_dict = connections.settings[DEFAULT_DB_ALIAS]
    if not settings.AROUTER_DB_THREADS or not settings_dict["ENGINE"].endswith("sqlite3"):
        return None
    kept: _LoopConnection | None = getattr(_per_thread, "connection", None)
    if kept is None or kept.path != str(settings_dict["NAME"]):  # a test database, say
        try:
            kept = _per_thread.connection = _LoopConnection(settings_dict)
        except sqlite3.Error:
            return None
    return kept


def write_now(writer: _LoopConnection, sql: str, params: Sequence) -> int | None:
    """Run one INSERT or UPDATE now and return the connection's last inserted row id (for
    an INSERT, its row's), or None, having written nothing, when it would have to wait for
    a lock or failed (the caller then writes the patient way, which reports a failure)."""
    try:
        cursor = writer.sqlite.execute(sql, params)
    except sqlite3.Error:
        return None
    row_id = cursor.lastrowid or 0
    cursor.close()
    _count_write()
    return row_id


def rows_until_checkpoint() -> int:
    """How many more rows the loop writes before a kept thread is asked to checkpoint."""
    return CHECKPOINT_EVERY - _rows_since_checkpoint


def _count_write() -> None:
    global _rows_since_checkpoint
    _rows_since_checkpoint += 1
    if _rows_since_checkpoint >= CHECKPOINT_EVERY:
        _rows_since_checkpoint = 0
        start_query(_checkpoint).add_done_callback(_log_checkpoint_failure)


def _checkpoint() -> None:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _log_checkpoint_failure(future) -> None:
    if not future.cancelled() and (error := future.exception()) is not None:
        logger.warning("write-ahead log checkpoint failed: %s", error)


__all__ = ["CHECKPOINT_EVERY", "loop_writer", "rows_until_checkpoint", "write_now"]
