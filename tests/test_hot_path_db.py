"""Hot-path queries run on long-lived threads that keep their database connections."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from accounts.models import Team
from core.hot_path_db import run_query, start_query

pytestmark = pytest.mark.django_db(transaction=True)


def _where() -> tuple[str, int]:
    Team.objects.count()
    return threading.current_thread().name, id(connection.connection)


async def test_queries_run_on_kept_connections():
    seen = {await run_query(_where) for _ in range(20)}
    names = {name for name, _ in seen}
    assert all(name.startswith("hot-path-db") for name in names)
    # At most one connection per hot-path thread, however many queries ran.
    assert len(seen) <= len(names)


async def test_a_started_query_runs_before_the_caller_awaits():
    """start_query hands the query over at once: it runs while the event loop is still
    busy with the caller (here blocked, never yielding, until the query has run)."""
    ran = threading.Event()
    future = start_query(ran.set)
    assert ran.wait(timeout=10)
    await future


def _backend() -> tuple[str, int]:
    Team.objects.count()
    return threading.current_thread().name, connection.connection.info.backend_pid


def _terminate(pids: set[int]) -> None:
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="only a database server drops connections (a SQLite file cannot)",
)
async def test_a_connection_the_database_dropped_is_replaced():
    """The server ends the kept connections (as a restart or failover does); the next
    queries on those threads still succeed, by retrying once on a new connection."""
    backends = set(await asyncio.gather(*(run_query(_backend) for _ in range(20))))
    await sync_to_async(_terminate)({pid for _, pid in backends})
    await run_query(Team.objects.create, name="after")
    counts = await asyncio.gather(*(run_query(Team.objects.count) for _ in range(20)))
    assert counts == [1] * 20
    replaced = set(await asyncio.gather(*(run_query(_backend) for _ in range(20))))
    assert not {pid for _, pid in replaced} & {pid for _, pid in backends}


async def test_disabled_threads_fall_back_to_sync_to_async(settings):
    settings.AROUTER_DB_THREADS = 0
    name, _ = await run_query(_where)
    assert not name.startswith("hot-path-db")
