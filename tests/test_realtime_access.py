"""Who may keep talking on an open realtime socket, and from which pages it may be opened.

A socket outlives the checks made at its handshake, so every turn (input_audio_buffer.commit,
response.create) reads the key, the membership and the login from the database again, and
is admitted against the key's limits before any engine runs. Revoking a key closes its
sockets through the Channels layer (in-memory here, Redis when REDIS_URL is set, as on CI).

Turns here are refused before Whisper would run, so most tests need no engine: the buffer
committed is 200 ms of silence.
"""

import base64
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from accounts import ephemeral
from accounts.auth import authenticate_key
from accounts.models import ApiKey, Membership
from tests import test_realtime as rt
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

SILENCE = base64.b64encode(b"\0" * 9600).decode()  # 200 ms of 24 kHz pcm16
HOST = b"localhost:8000"


async def commit_silence(comm, event_id: str = "evt_commit") -> None:
    await rt.send(comm, type="input_audio_buffer.append", audio=SILENCE)
    await rt.send(comm, type="input_audio_buffer.commit", event_id=event_id)


async def expect_error_then_close(comm, code: str) -> dict:
    """The next event is OpenAI's error event, then the socket closes 1008."""
    event = await rt.receive(comm)
    assert event["type"] == "error", event
    error = event["error"]
    assert set(error) == {"message", "type", "param", "code", "event_id"}
    assert error["code"] == code
    assert await comm.receive_output(timeout=rt.TIMEOUT) == {
        "type": "websocket.close",
        "code": 1008,
    }
    return error


async def open_with(path: str = rt.PATH, *, headers=(), subprotocols=None):
    comm = rt.communicator(path, headers=headers, subprotocols=subprotocols)
    connected, _ = await comm.connect(timeout=rt.TIMEOUT)
    assert connected
    assert (await rt.receive(comm))["type"] == "session.created"
    return comm


async def session_cookie(user) -> tuple[Client, bytes]:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return client, f"sessionid={client.cookies['sessionid'].value}".encode()


def session_headers(cookie: bytes, origin: bytes, host: bytes = HOST) -> list:
    return [(b"cookie", cookie), (b"origin", origin), (b"host", host)]


def token_subprotocols(token: str) -> list[str]:
    return ["realtime", f"openai-insecure-api-key.{token}"]


# --- credentials re-checked at every turn ------------------------------------------------


async def test_a_key_revoked_behind_the_key_cache_is_refused_at_the_next_commit(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    # A revocation this worker did not make (no signal, no broadcast): its key cache still
    # trusts the key, the database does not.
    await ApiKey.objects.filter(pk=api_key.api_key.pk).aupdate(revoked_at=timezone.now())
    assert (await authenticate_key(api_key.raw)).pk == api_key.api_key.pk  # still cached
    await commit_silence(comm)
    error = await expect_error_then_close(comm, "invalid_api_key")
    assert error["event_id"] == "evt_commit"
    assert "revoked" in error["message"]
    assert await UsageRecord.objects.acount() == 0


async def test_a_key_that_expires_mid_session_is_refused_at_the_next_commit(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    past = timezone.now() - timedelta(seconds=1)
    await ApiKey.objects.filter(pk=api_key.api_key.pk).aupdate(expires_at=past)
    await commit_silence(comm)
    assert "expired" in (await expect_error_then_close(comm, "invalid_api_key"))["message"]


async def test_a_token_socket_ends_when_its_member_leaves_the_team(api_key, member):
    token = await sync_to_async(ephemeral.mint)(api_key.api_key, member.pk)
    comm = await open_with(subprotocols=token_subprotocols(token))
    await Membership.objects.filter(user=member).adelete()
    await commit_silence(comm)
    await expect_error_then_close(comm, "invalid_api_key")


async def test_a_session_socket_ends_when_the_user_logs_out(api_key, owner):
    client, cookie = await session_cookie(owner)
    path = f"{rt.PATH}&key_id={api_key.api_key.pk}"
    comm = await open_with(path, headers=session_headers(cookie, b"http://localhost:8000"))
    await sync_to_async(client.logout)()
    await commit_silence(comm)
    error = await expect_error_then_close(comm, "invalid_api_key")
    assert "Log in again" in error["message"]


async def test_a_session_socket_ends_when_the_user_leaves_the_team(api_key, team, member):
    _, cookie = await session_cookie(member)
    path = f"{rt.PATH}&key_id={api_key.api_key.pk}"
    comm = await open_with(path, headers=session_headers(cookie, b"http://localhost:8000"))
    await Membership.objects.filter(user=member, team=team).adelete()
    await commit_silence(comm)
    await expect_error_then_close(comm, "invalid_api_key")


# --- revocation closes open sockets through the Channels layer ---------------------------


async def test_revoking_a_key_closes_its_open_sockets_at_once(
    api_key, owner, outsider_key, as_owner
):
    by_header, _ = await rt.open_session(api_key.raw)
    token = await sync_to_async(ephemeral.mint)(api_key.api_key, owner.pk)
    by_token = await open_with(subprotocols=token_subprotocols(token))
    other, _ = await rt.open_session(outsider_key.raw)

    # The dashboard's own revoke (a POST to the keys page), in this process; the sockets
    # learn it from the channel layer, without sending anything themselves.
    url = f"/teams/{api_key.api_key.team_id}/keys/{api_key.api_key.pk}/revoke/"
    assert (await sync_to_async(as_owner.post)(url)).status_code == 302

    for comm in (by_header, by_token):
        error = await expect_error_then_close(comm, "invalid_api_key")
        assert "revoked" in error["message"]
        assert error["event_id"] is None  # not an answer to a client event
    # Another key's socket is untouched and still serves.
    assert await other.receive_nothing()
    await rt.send(other, type="session.update", session={"instructions": "Still here."})
    assert (await rt.receive(other))["type"] == "session.updated"
    await other.disconnect()


# --- limits are admitted before any engine work ------------------------------------------


async def test_a_key_not_allowed_this_endpoint_gets_no_transcript(team):
    issued = await sync_to_async(ApiKey.issue)(
        team, name="speech only", allowed_endpoints=["/v1/audio/speech"], monthly_budget_usd=0
    )
    comm, _ = await rt.open_session(issued.raw)
    await commit_silence(comm, "evt_1")
    event = await rt.receive(comm)  # the error, not input_audio_buffer.committed
    assert event["type"] == "error", event
    assert event["error"]["type"] == "permission_error"
    assert event["error"]["code"] == "endpoint_not_allowed"
    assert event["error"]["event_id"] == "evt_1"
    # Limits are not credentials: the socket stays open, the buffer kept to retry or clear.
    await rt.send(comm, type="input_audio_buffer.clear")
    assert (await rt.receive(comm))["type"] == "input_audio_buffer.cleared"
    assert await UsageRecord.objects.acount() == 0
    await comm.disconnect()


async def test_limits_changed_mid_session_apply_at_the_next_commit(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await ApiKey.objects.filter(pk=api_key.api_key.pk).aupdate(monthly_budget_usd=0)
    await commit_silence(comm)
    event = await rt.receive(comm)
    assert event["type"] == "error", event
    assert event["error"]["code"] == "insufficient_quota"
    await ApiKey.objects.filter(pk=api_key.api_key.pk).aupdate(
        monthly_budget_usd=None, allowed_models=["local/whisper-base"]
    )
    await rt.send(comm, type="input_audio_buffer.commit", event_id="evt_2")
    error = (await rt.receive(comm))["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "model_not_found",
        "model",
        "evt_2",
    )
    assert await UsageRecord.objects.acount() == 0
    await comm.disconnect()


# --- the Origin of a session-authenticated handshake -------------------------------------


async def session_socket(user, key: ApiKey, origin: bytes, host: bytes):
    _, cookie = await session_cookie(user)
    headers = [(b"cookie", cookie), (b"origin", origin)] + ([(b"host", host)] if host else [])
    return rt.communicator(f"{rt.PATH}&key_id={key.pk}", headers=headers)


async def test_session_auth_refuses_an_origin_on_another_port_or_host(api_key, owner):
    refused = [
        (b"http://localhost:9999", HOST),  # another port is another site
        (b"http://localhost", HOST),  # port 80
        (b"https://localhost:8000", b"localhost"),  # port 8000, where Host means 443
        (b"http://localhost:8000", b""),  # no Host to compare with
        (b"http://evil.example:8000", b"evil.example:8000"),  # not in ALLOWED_HOSTS
        (b"null", HOST),  # a sandboxed page
    ]
    for origin, host in refused:
        comm = await session_socket(owner, api_key.api_key, origin, host)
        event = await rt.expect_closed_after_error(comm, "invalid_origin")
        assert event["error"]["type"] == "permission_error", (origin, host)


@pytest.mark.parametrize(
    ("origin", "host", "next_door"),
    [
        (b"http://localhost:8000", HOST, b"http://localhost:8001"),
        (b"http://LOCALHOST:8000", HOST, b"http://LOCALHOST"),
        (b"https://localhost", b"localhost", b"https://localhost:8443"),
        (b"https://localhost:443", b"localhost", b"http://localhost:443"),
        (b"http://[::1]:8000", b"[::1]:8000", b"http://[::1]:9000"),
    ],
)
async def test_session_auth_is_for_pages_of_this_host_and_port_only(
    api_key, owner, origin, host, next_door
):
    comm = await session_socket(owner, api_key.api_key, origin, host)
    connected, _ = await comm.connect(timeout=rt.TIMEOUT)
    assert connected
    assert (await rt.receive(comm))["type"] == "session.created"
    await comm.disconnect()
    # The same host on another port (another origin, maybe another service) is refused.
    comm = await session_socket(owner, api_key.api_key, next_door, host)
    await rt.expect_closed_after_error(comm, "invalid_origin")
