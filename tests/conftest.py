"""Shared fixtures: a team with an owner and a member, an outsider with a team of their
own, API keys for each, and a live ARouter served by uvicorn on loopback."""

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import AsyncClient, Client

from accounts.models import ApiKey, IssuedKey, Membership, Team
from gateway.providers.attempts import start_attempt_log
from tests.pages import logged_in


@pytest.fixture(autouse=True)
def _hot_path_queries_see_the_test_transaction(request):
    """Hot-path queries normally run on their own threads and connections, which cannot see
    rows a transaction-wrapped test has not committed; such tests query on the request's
    thread instead. Transactional tests (and the live server) keep the production path."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction", False)
    )
    if not transactional:
        # Asked for only here: an early `settings` fixture would undo its changes after
        # (and so over) a test's own override_settings blocks.
        request.getfixturevalue("settings").AROUTER_DB_THREADS = 0


@pytest.fixture(autouse=True)
def _fresh_attempt_log():
    """Each request starts its own attempt log in its own task; the sync test client copies
    context changes back into the test thread, so start every test from a clean log."""
    start_attempt_log()


@pytest.fixture
def owner(db) -> User:
    return User.objects.create_user("owner", "owner@example.com", "owner-password-1")


@pytest.fixture
def team(owner) -> Team:
    team = Team.objects.create(name="acme")
    Membership.objects.create(team=team, user=owner, role=Membership.Role.OWNER)
    return team


@pytest.fixture
def member(team) -> User:
    user = User.objects.create_user("member", "member@example.com", "member-password-1")
    Membership.objects.create(team=team, user=user, role=Membership.Role.MEMBER)
    return user


@pytest.fixture
def outsider(db) -> User:
    user = User.objects.create_user("outsider", "outsider@example.com", "outsider-password-1")
    other = Team.objects.create(name="globex")
    Membership.objects.create(team=other, user=user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def api_key(team, owner) -> IssuedKey:
    return ApiKey.issue(team, name="test", created_by=owner)


@pytest.fixture
def outsider_key(outsider) -> IssuedKey:
    return ApiKey.issue(outsider.teams.get(), name="outsider", created_by=outsider)


@pytest.fixture
def api(api_key) -> Client:
    """A Django test client that authenticates as the team's key."""
    return Client(headers={"Authorization": f"Bearer {api_key.raw}"})


@pytest.fixture
def async_api(api_key) -> AsyncClient:
    return AsyncClient(headers={"Authorization": f"Bearer {api_key.raw}"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """ARouter's ASGI app under uvicorn in a background thread, on a loopback port."""

    def __init__(self, **overrides) -> None:
        from arouter.asgi import application
        from arouter.http_server import UVICORN_OPTIONS

        self.port = _free_port()
        # As `make serve` runs it (protocol, header limit, timeouts), quieter; `overrides`
        # change single options (a test's shorter timeouts).
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            **{**UVICORN_OPTIONS, **overrides},
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def arouter_server(django_db_setup, django_db_blocker):
    """One uvicorn for the session; tests using it need `transactional_db` for their rows."""
    server = LiveServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
async def _release_async_orm_connections():
    """Async ORM calls run in asgiref's sync thread, outside any request, so nothing
    closes their connections; close them so the test database can be dropped at the end."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def live_key(transactional_db, arouter_server) -> IssuedKey:
    team = Team.objects.create(name="live")
    return ApiKey.issue(team, name="live")


@pytest.fixture
def openai_client(arouter_server, live_key):
    """The official OpenAI SDK pointed at the live server: only base_url and api_key change."""
    from openai import OpenAI

    return OpenAI(base_url=f"{arouter_server.url}/v1", api_key=live_key.raw, max_retries=0)


JS_DIR = Path(__file__).parent / "js"


@pytest.fixture
def run_js_snippet(arouter_server, live_key):
    """Run one of the spec's JavaScript examples (tests/js/NAME.mjs) under node with the
    `openai` npm package, pointed at the live server; returns the finished process.

    Skipped where node or the package is missing, except under CI, where that is a failure
    (`make test` installs the package)."""

    def run(script: str, cwd: Path) -> subprocess.CompletedProcess:
        node = shutil.which("node")
        missing = "node is not installed" if node is None else None
        if missing is None and not (JS_DIR / "node_modules" / "openai").is_dir():
            missing = "the openai npm package is not installed: run `npm ci --prefix tests/js`"
        if missing:
            (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)
        env = {
            **os.environ,
            "AROUTER_BASE_URL": f"{arouter_server.url}/v1",
            "AROUTER_API_KEY": live_key.raw,
        }
        return subprocess.run(
            [node, str(JS_DIR / script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


# --- page clients: the same people, logged in ------------------------------------------


@pytest.fixture
def as_owner(owner) -> Client:
    return logged_in(owner)


@pytest.fixture
def as_member(member) -> Client:
    return logged_in(member)


@pytest.fixture
def as_outsider(outsider) -> Client:
    return logged_in(outsider)


@pytest.fixture
def fresh_cache():
    """An empty Django cache (log-in throttling counts live there, in Redis under CI)."""
    from django.core.cache import cache

    cache.clear()
    yield cache
    cache.clear()
