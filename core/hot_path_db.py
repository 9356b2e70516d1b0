"""Long-lived threads for the queries every API request makes (key lookup, ledger row).

Django's ASGI handler gives each request a thread of its own for synchronous work, and
database connections belong to threads, so through `sync_to_async` every request would
open and close a connection (for SQLite: open the file and set its pragmas; for
PostgreSQL: a pool checkout and reset). These queries run instead on a few threads that
keep their connections, which removes most of the gateway's per-request overhead.

`AROUTER_DB_THREADS=0` falls back to `sync_to_async`; tests that wrap each test in a
transaction use that, since only the request's own thread can see their rows.
"""

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=settings.AROUTER_DB_THREADS, thread_name_prefix="hot-path-db"
                )
    return _executor


def _on_kept_connection(query: Callable[[], T]) -> T:
    try:
        return query()
    except (InterfaceError, OperationalError):
        # The kept connection may have died (a database restart); retry once on a new one.
        connection.close()
        return query()


def start_query(query: Callable[..., T], /, *args, **kwargs) -> "asyncio.Future[T]":
    """Start a synchronous ORM call on a hot-path thread now, before the caller next
    awaits, and return its future: the query runs beside what the caller does next."""
    bound = functools.partial(query, *args, **kwargs)
    if not settings.AROUTER_DB_THREADS:
        return asyncio.ensure_future(sync_to_async(bound)())
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(_threads(), _on_kept_connection, bound)


async def run_query(query: Callable[..., T], /, *args, **kwargs) -> T:
    """Run a synchronous ORM call on a hot-path thread and await its result."""
    return await start_query(query, *args, **kwargs)
