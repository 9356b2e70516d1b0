"""The database going away: a clear 503, and service again without a restart."""

import time

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection

from accounts.models import ApiKey, Team


@pytest.mark.skipif(not settings.DATABASE_URL, reason="needs PostgreSQL (CI runs it)")
def test_a_database_outage_is_a_503_and_service_resumes_by_itself(arouter_server, transactional_db):
    raw = ApiKey.issue(Team.objects.create(name="outage"), name="fresh").raw  # not cached yet
    name = connection.settings_dict["NAME"]
    admin_url = settings.DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    headers = {"Authorization": f"Bearer {raw}"}

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        try:
            down = httpx.get(f"{arouter_server.url}/v1/models", headers=headers, timeout=60)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            connection.close()  # this test's own connection was terminated too

    assert down.status_code == 503
    assert down.headers["retry-after"] == "2"
    error = down.json()["error"]
    assert error["code"] == "database_unavailable"
    assert set(error) == {"message", "type", "param", "code"}
    up = httpx.get(f"{arouter_server.url}/v1/models", headers=headers, timeout=30)
    assert up.status_code == 200
    _until_this_process_reconnects()


def _until_this_process_reconnects(seconds: float = 30) -> None:
    """This process's own pool backed off while the database refused it (its retries grow
    seconds apart): wait for it here, not in the test database's teardown, which gives it
    only the pool's 3 s."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection.ensure_connection()
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            connection.close()
