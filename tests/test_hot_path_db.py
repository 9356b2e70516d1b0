"""Hot-path queries run on long-lived threads that keep their database connections."""

import threading

import pytest
from django.db import connection

from accounts.models import Team
from core.hot_path_db import run_query

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


async def test_a_dead_connection_is_replaced(settings):
    await run_query(Team.objects.create, name="before")

    def break_then_count() -> int:
        connection.close()  # as if the database had dropped it
        return Team.objects.count()

    assert await run_query(break_then_count) == 1


async def test_disabled_threads_fall_back_to_sync_to_async(settings):
    settings.AROUTER_DB_THREADS = 0
    name, _ = await run_query(_where)
    assert not name.startswith("hot-path-db")
