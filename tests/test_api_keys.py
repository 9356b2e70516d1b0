"""API key lifecycle: issue, show once, authenticate, revoke, expire, isolation."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import KEY_PREFIX, ApiKey, Team, key_digest


def test_issued_key_format_and_storage(api_key):
    raw = api_key.raw
    assert raw.startswith(KEY_PREFIX)
    assert len(raw) == len(KEY_PREFIX) + 43  # token_urlsafe(32)
    stored = ApiKey.objects.get(pk=api_key.api_key.pk)
    assert stored.digest == key_digest(raw)
    assert raw not in {stored.digest, stored.lookup}
    assert stored.lookup == raw[len(KEY_PREFIX) : len(KEY_PREFIX) + 12]
    assert ApiKey._meta.get_field("lookup").unique  # indexed lookup


def test_digest_is_peppered_hmac(settings, api_key):
    settings.AROUTER_KEY_PEPPER = "another pepper"
    assert key_digest(api_key.raw) != api_key.api_key.digest


def test_valid_key_authenticates(api):
    response = api.get("/v1/models")
    assert response.status_code == 200
    assert response.json()["object"] == "list"


@pytest.mark.parametrize(
    ("header", "message_part"),
    [
        (None, "You didn't provide an API key"),
        ("Basic dXNlcjpwYXNz", "Incorrect API key provided"),
        ("Bearer ", "Incorrect API key provided"),
        ("Bearer not-a-key", "Incorrect API key provided"),
        ("Bearer lr_live_" + "x" * 43, "Incorrect API key provided"),
    ],
)
def test_bad_credentials_get_openai_401(client, db, header, message_part):
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/v1/models", headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert message_part in error["message"]


def test_right_lookup_wrong_secret_is_rejected(client, api_key):
    forged = api_key.raw[:-4] + ("AAAA" if not api_key.raw.endswith("AAAA") else "BBBB")
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert forged[-4:] in response.json()["error"]["message"]  # masked, not the whole key
    assert forged not in response.json()["error"]["message"]


def test_revoked_key_is_rejected(api, api_key):
    api_key.api_key.revoke()
    response = api.get("/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API key has been revoked."


def test_expired_key_is_rejected(api, api_key):
    api_key.api_key.expires_at = timezone.now() - timedelta(seconds=1)
    api_key.api_key.save()
    response = api.get("/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API key has expired."


def test_key_with_future_expiry_works(api, api_key):
    api_key.api_key.expires_at = timezone.now() + timedelta(days=1)
    api_key.api_key.save()
    assert api.get("/v1/models").status_code == 200


def test_last_used_at_written_at_most_once_a_minute(api, api_key, settings):
    settings.AROUTER_KEY_CACHE_SECONDS = 0  # the test rewinds last_used_at behind its back
    assert api_key.api_key.last_used_at is None
    api.get("/v1/models")
    first = ApiKey.objects.get(pk=api_key.api_key.pk).last_used_at
    assert first is not None
    api.get("/v1/models")
    assert ApiKey.objects.get(pk=api_key.api_key.pk).last_used_at == first

    stale = first - timedelta(minutes=2)
    ApiKey.objects.filter(pk=api_key.api_key.pk).update(last_used_at=stale)
    api.get("/v1/models")
    assert ApiKey.objects.get(pk=api_key.api_key.pk).last_used_at > stale


def test_keys_are_isolated_between_teams(client, api_key, outsider_key):
    ours = client.get("/v1/models", headers={"Authorization": f"Bearer {api_key.raw}"})
    theirs = client.get("/v1/models", headers={"Authorization": f"Bearer {outsider_key.raw}"})
    assert ours.status_code == theirs.status_code == 200
    assert api_key.api_key.team != outsider_key.api_key.team
    # Revoking one team's key leaves the other team's key working.
    api_key.api_key.revoke()
    assert (
        client.get("/v1/models", headers={"Authorization": f"Bearer {api_key.raw}"}).status_code
        == 401
    )
    assert (
        client.get(
            "/v1/models", headers={"Authorization": f"Bearer {outsider_key.raw}"}
        ).status_code
        == 200
    )


def test_usable_queryset_excludes_revoked_and_expired(team):
    live = ApiKey.issue(team, name="live").api_key
    ApiKey.issue(team, name="revoked").api_key.revoke()
    ApiKey.issue(team, name="expired", expires_at=timezone.now() - timedelta(hours=1))
    assert list(ApiKey.objects.usable()) == [live]


def test_createkey_prints_raw_key_last_and_creates_team(db, capsys):
    call_command("createkey", team="newteam", name="ci")
    lines = capsys.readouterr().out.strip().splitlines()
    raw = lines[-1]
    assert raw.startswith(KEY_PREFIX)
    key = ApiKey.objects.get(team__name="newteam", name="ci")
    assert key.matches(raw)


def test_createkey_skip_if_exists_shows_no_second_key(db, capsys):
    call_command("createkey", team="demo", name="demo", skip_if_exists=True)
    first_out = capsys.readouterr().out
    call_command("createkey", team="demo", name="demo", skip_if_exists=True)
    second_out = capsys.readouterr().out
    assert KEY_PREFIX in first_out
    assert KEY_PREFIX not in second_out.replace("createkey", "")
    assert Team.objects.get(name="demo").api_keys.count() == 1


def test_revoking_a_cached_key_applies_at_once(api, api_key):
    assert api.get("/v1/models").status_code == 200  # verified and cached
    api_key.api_key.revoke()
    assert api.get("/v1/models").status_code == 401


def test_changes_from_other_workers_apply_within_the_cache_time(api, api_key, settings):
    settings.AROUTER_KEY_CACHE_SECONDS = 0.3
    assert api.get("/v1/models").status_code == 200
    # Another worker revokes the key: this process learns of it when its entry expires.
    ApiKey.objects.filter(pk=api_key.api_key.pk).update(revoked_at=timezone.now())
    assert api.get("/v1/models").status_code == 200
    time.sleep(0.35)
    assert api.get("/v1/models").status_code == 401
