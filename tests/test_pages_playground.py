"""The playground page, its short-lived tokens for /v1, and its cost lookups."""

import re
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core import signing
from django.test import Client

from accounts import ephemeral
from accounts.models import Membership
from tests.openai_errors import assert_error
from usage.models import UsageRecord


def token_for(client, team, key) -> str:
    response = client.post(f"/teams/{team.pk}/playground/session", {"key_id": key.pk})
    assert response.status_code == 200
    return response.json()["token"]


def models_with(token: str):
    return Client(headers={"Authorization": f"Bearer {token}"}).get("/v1/models")


@pytest.mark.parametrize(
    ("who", "status"), [("as_owner", 200), ("as_member", 200), ("as_outsider", 404)]
)
def test_playground_is_for_team_members(request, team, member, api_key, who, status):
    response = request.getfixturevalue(who).get(f"/teams/{team.pk}/playground/")
    assert response.status_code == status
    if status == 200:
        page = response.content.decode()
        assert api_key.api_key.masked in page
        assert api_key.raw not in page
        assert "local/whisper-base" in page


def test_without_a_usable_key_the_page_says_how_to_get_one(as_owner, team):
    assert b"no usable API key" in as_owner.get(f"/teams/{team.pk}/playground/").content


def test_anonymous_visitors_are_sent_to_log_in(team):
    assert Client().get(f"/teams/{team.pk}/playground/").status_code == 302


def test_a_member_gets_a_token_that_bills_the_chosen_key(as_member, team, api_key):
    token = token_for(as_member, team, api_key.api_key)
    assert token.startswith("ek_")
    assert ":" not in token  # usable as a websocket subprotocol
    assert models_with(token).status_code == 200


def test_tokens_only_for_usable_keys_of_ones_own_team(
    as_owner, as_outsider, team, api_key, outsider_key
):
    assert (
        as_outsider.post(
            f"/teams/{team.pk}/playground/session", {"key_id": api_key.api_key.pk}
        ).status_code
        == 404
    )
    assert (
        as_owner.post(
            f"/teams/{team.pk}/playground/session", {"key_id": outsider_key.api_key.pk}
        ).status_code
        == 404
    )
    api_key.api_key.revoke()
    assert (
        as_owner.post(
            f"/teams/{team.pk}/playground/session", {"key_id": api_key.api_key.pk}
        ).status_code
        == 404
    )
    assert as_owner.post(f"/teams/{team.pk}/playground/session", {}).status_code == 404


def test_a_token_dies_with_its_key_or_the_membership(as_member, team, api_key, member):
    token = token_for(as_member, team, api_key.api_key)
    Membership.objects.filter(user=member).delete()
    assert_error(models_with(token), 401, None, "invalid_api_key")

    owner_token = ephemeral.mint(api_key.api_key, team.memberships.get().user_id)
    api_key.api_key.revoke()
    response = models_with(owner_token)
    assert_error(response, 401, None, "invalid_api_key")
    assert "revoked" in response.json()["error"]["message"]


def test_expired_and_forged_tokens_are_refused(as_owner, team, api_key, monkeypatch):
    token = token_for(as_owner, team, api_key.api_key)
    later = time.time() + ephemeral.LIFETIME_SECONDS + 1
    monkeypatch.setattr(signing.time, "time", lambda: later)
    response = models_with(token)
    assert_error(response, 401, None, "invalid_api_key")
    assert "expired" in response.json()["error"]["message"]
    monkeypatch.undo()

    claims = signing.TimestampSigner(salt="other", sep="~").sign_object(
        {"k": api_key.api_key.pk, "u": 1}
    )
    assert_error(models_with("ek_" + claims), 401, None, "invalid_api_key")


def test_cost_lookup_is_scoped_to_the_team(as_owner, as_outsider, team, api_key, outsider_key):
    UsageRecord.objects.create(
        api_key=api_key.api_key, team=team, model="local/piper", endpoint="/v1/audio/speech",
        status_code=200, request_id="req_abc", cost=Decimal("0.00125"),
    )  # fmt: skip
    response = as_owner.get(f"/teams/{team.pk}/playground/cost/req_abc")
    assert response.json() == {"request_id": "req_abc", "cost": "0.00125000", "status": 200}
    assert as_owner.get(f"/teams/{team.pk}/playground/cost/req_missing").status_code == 404
    assert as_outsider.get(f"/teams/{team.pk}/playground/cost/req_abc").status_code == 404
    other_team = outsider_key.api_key.team_id
    assert as_outsider.get(f"/teams/{other_team}/playground/cost/req_abc").status_code == 404


def test_only_local_cascades_are_offered_for_talking(as_owner, team, api_key):
    chat_models = as_owner.get(f"/teams/{team.pk}/playground/").context["chat_models"]
    # All serve through the local cascade; upstream audio models are not offered.
    assert chat_models == [
        "gpt-4o-audio-preview",
        "gpt-realtime",
        "local/audio-chat",
        "openai/gpt-5.4-audio-preview",
    ]


def test_the_talk_tab_has_talk_mode_push_to_talk_and_a_level_meter(as_owner, team, api_key):
    page = as_owner.get(f"/teams/{team.pk}/playground/").content.decode()
    for control in ('id="talk-mode"', 'id="chat-talk"', 'id="talk-level"', 'id="talk-log"'):
        assert control in page
    # Its scripts are static modules (the pages' policy refuses inline scripts), the
    # microphone's AudioWorklet among them.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    sources = [re.search(r'src="([^"]+)"', attributes).group(1) for attributes, _ in scripts]
    assert all(body.strip() == "" for _, body in scripts)
    assert "/static/js/playground-talk.js" in sources
    worklet = re.search(r'data-worklet-url="([^"]+)"', page).group(1)
    for url in [*sources, worklet]:
        assert url.startswith(settings.STATIC_URL)
        assert finders.find(url.removeprefix(settings.STATIC_URL)), url


def test_without_a_usable_key_the_playground_scripts_are_not_loaded(as_owner, team):
    page = as_owner.get(f"/teams/{team.pk}/playground/").content.decode()
    assert "playground.js" not in page
    assert "playground-talk.js" not in page
