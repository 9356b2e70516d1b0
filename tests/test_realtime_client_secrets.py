"""POST /v1/realtime/client_secrets: minted with the official SDK on a live server, then
used as the realtime socket's credential (OpenAI's browser subprotocol)."""

import json
import time

import pytest
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts import ephemeral
from accounts.models import ApiKey
from tests.openai_contract import assert_matches
from tests.openai_errors import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 120
SESSION = {
    "type": "realtime",
    "model": "local/audio-chat",
    "instructions": "Answer in one short sentence.",
    "audio": {"output": {"voice": "alloy"}},
}


def _url(server) -> str:
    return server.url.replace("http", "ws") + "/v1/realtime"


def _first_events(server, secret: str, count: int = 1) -> list[dict]:
    """What the socket opened with `secret` as subprotocol sends first, then closes."""
    protocols = ["realtime", f"openai-insecure-api-key.{secret}"]
    events = []
    with connect(_url(server), subprotocols=protocols, open_timeout=TIMEOUT) as socket:
        try:
            for _ in range(count):
                events.append(json.loads(socket.recv(timeout=TIMEOUT)))
        except ConnectionClosed:
            pass
    return events


def test_sdk_minted_secret_opens_the_socket_with_its_session(openai_client, arouter_server):
    before = int(time.time())
    secret = openai_client.realtime.client_secrets.create(
        session=SESSION, expires_after={"anchor": "created_at", "seconds": 120}
    )
    body = secret.model_dump(mode="json", exclude_unset=True)
    assert_matches("RealtimeCreateClientSecretResponse", body)
    assert secret.value.startswith("ek_")
    assert before + 120 <= secret.expires_at <= int(time.time()) + 120
    assert secret.session.instructions == SESSION["instructions"]

    (created,) = _first_events(arouter_server, secret.value)
    assert created["type"] == "session.created"
    assert created["session"]["instructions"] == SESSION["instructions"]
    assert created["session"]["model"] == "local/audio-chat"


def test_default_expiry_is_ten_minutes(openai_client):
    secret = openai_client.realtime.client_secrets.create(session={"type": "realtime"})
    assert abs(secret.expires_at - (time.time() + 600)) < 60


def test_expired_secret_is_refused(arouter_server, live_key):
    key = ApiKey.objects.get(pk=live_key.api_key.pk)
    secret = ephemeral.mint_client_secret(key, int(time.time()) - 1, {"type": "realtime"})
    events = _first_events(arouter_server, secret)
    assert events[0]["type"] == "error"
    assert events[0]["error"]["code"] == "invalid_api_key"
    assert "expired" in events[0]["error"]["message"]


def test_secret_of_a_revoked_key_is_refused(openai_client, arouter_server, live_key):
    secret = openai_client.realtime.client_secrets.create(session={"type": "realtime"})
    ApiKey.objects.filter(pk=live_key.api_key.pk).update(revoked_at=timezone.now())
    # The server's key cache may still trust the key for a few seconds; a client secret's
    # key is read from the database on every use.
    events = _first_events(arouter_server, secret.value)
    assert events[0]["type"] == "error"
    assert events[0]["error"]["code"] == "invalid_api_key"
    assert "revoked" in events[0]["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"session": {"type": "realtime", "temperature": "hot"}}, "session.temperature"),
        ({"session": {"type": "realtime", "bogus": 1}}, "session.bogus"),
        ({"session": {"type": "transcription"}}, "session.type"),
        ({"session": {"type": "realtime", "model": "local/gemma-3-270m"}}, "session.model"),
        ({"session": "realtime"}, "session"),
        ({"expires_after": {"seconds": 5}}, "expires_after.seconds"),
        ({"expires_after": {"anchor": "now"}}, "expires_after.anchor"),
    ],
)
def test_bad_body_is_a_400_naming_the_param(api, body, param):
    response = api.post("/v1/realtime/client_secrets", body, content_type="application/json")
    assert_error(response, 400, param)


def test_no_key_is_a_401(client):
    response = client.post(
        "/v1/realtime/client_secrets", {"session": SESSION}, content_type="application/json"
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
