"""The keys page: who sees and manages keys, the secret shown once, limits, revoking."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey
from usage.models import UsageRecord


def create(client, team, **fields):
    return client.post(f"/teams/{team.pk}/keys/", {"name": "ci", **fields}, follow=True)


def shown_key(response) -> str | None:
    match = re.search(r'id="new-key">([^<]+)<', response.content.decode())
    return match.group(1) if match else None


@pytest.mark.parametrize(
    ("who", "status"), [("as_owner", 200), ("as_member", 200), ("as_outsider", 404)]
)
def test_keys_page_is_for_team_members(request, team, member, api_key, who, status):
    response = request.getfixturevalue(who).get(f"/teams/{team.pk}/keys/")
    assert response.status_code == status
    if status == 200:
        assert api_key.api_key.masked in response.content.decode()
        assert api_key.raw not in response.content.decode()


def test_anonymous_visitors_are_sent_to_log_in(team):
    assert Client().get(f"/teams/{team.pk}/keys/").status_code == 302


def test_created_key_is_shown_once_and_works(as_owner, team, owner):
    response = create(as_owner, team, requests_per_minute="60", monthly_budget_usd="12.50")
    raw = shown_key(response)

    assert raw.startswith("lr_live_")
    key = ApiKey.objects.get(name="ci")
    assert key.matches(raw)
    assert key.created_by == owner
    assert key.requests_per_minute == 60
    assert key.monthly_budget_usd == Decimal("12.50")
    assert shown_key(as_owner.get(f"/teams/{team.pk}/keys/")) is None
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/v1/models").status_code == 200


def test_a_new_key_is_in_the_post_answer_only_never_in_the_session_or_a_cookie(as_owner, team):
    response = as_owner.post(f"/teams/{team.pk}/keys/", {"name": "ci"})

    # The answer to the post shows the key itself: no redirect that would carry it along.
    assert response.status_code == 200
    raw = shown_key(response)
    assert ApiKey.objects.get(name="ci").matches(raw)
    assert "no-store" in response["Cache-Control"]
    assert raw not in response.cookies.output()
    assert all(raw not in morsel.value for morsel in as_owner.cookies.values())
    # Django's session data is signed, not encrypted: the key must not be in any of it.
    for stored in Session.objects.all():
        assert raw not in repr(stored.get_decoded())
    assert raw not in repr(dict(as_owner.session.items()))


def test_posting_the_same_form_again_makes_no_second_key(as_owner, team):
    page = as_owner.get(f"/teams/{team.pk}/keys/").content.decode()
    form_id = re.search(r'name="form_id" value="([^"]+)"', page).group(1)
    first = as_owner.post(f"/teams/{team.pk}/keys/", {"name": "ci", "form_id": form_id})
    assert shown_key(first)

    # What a reload of the page showing the key sends: the same form again.
    again = as_owner.post(
        f"/teams/{team.pk}/keys/", {"name": "ci", "form_id": form_id}, follow=True
    )

    assert ApiKey.objects.filter(name="ci").count() == 1
    assert shown_key(again) is None
    assert "That form was sent already" in again.content.decode()
    # A fresh form (the one the answer shows) makes the next key.
    fresh = re.search(r'name="form_id" value="([^"]+)"', first.content.decode()).group(1)
    assert fresh != form_id
    as_owner.post(f"/teams/{team.pk}/keys/", {"name": "ci", "form_id": fresh})
    assert ApiKey.objects.filter(name="ci").count() == 2


def test_expiry_is_the_end_of_the_chosen_day(as_owner, team):
    day = (timezone.now() + timedelta(days=3)).date()
    create(as_owner, team, expires_at=day.isoformat())
    expires = ApiKey.objects.get(name="ci").expires_at
    assert expires.date() == day
    assert (expires.hour, expires.minute) == (23, 59)


def test_invalid_limits_are_explained_and_create_nothing(as_owner, team):
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    response = create(as_owner, team, requests_per_minute="-1", expires_at=yesterday)
    assert response.status_code == 400
    assert "Choose today or a later day." in response.content.decode()
    assert not ApiKey.objects.filter(name="ci").exists()


def test_members_and_outsiders_cannot_create_keys(as_member, as_outsider, team):
    assert create(as_member, team).status_code == 404
    assert create(as_outsider, team).status_code == 404
    assert not ApiKey.objects.filter(name="ci").exists()


def test_editing_limits(as_owner, team, api_key):
    url = f"/teams/{team.pk}/keys/{api_key.api_key.pk}/"
    assert as_owner.get(url).status_code == 200
    as_owner.post(url, {"name": "renamed", "max_concurrent_requests": "3"})
    api_key.api_key.refresh_from_db()
    assert api_key.api_key.name == "renamed"
    assert api_key.api_key.max_concurrent_requests == 3


def test_revoking_asks_first_then_the_key_stops_working(as_owner, team, api_key):
    url = f"/teams/{team.pk}/keys/{api_key.api_key.pk}/revoke/"
    confirm = as_owner.get(url)
    assert b"Revoke key" in confirm.content
    api_key.api_key.refresh_from_db()
    assert api_key.api_key.revoked_at is None

    as_owner.post(url)

    api_key.api_key.refresh_from_db()
    assert api_key.api_key.revoked_at is not None
    response = Client(headers={"Authorization": f"Bearer {api_key.raw}"}).get("/v1/models")
    assert response.status_code == 401


def test_nobody_outside_the_managers_can_edit_or_revoke(as_member, as_outsider, team, api_key):
    for client in (as_member, as_outsider):
        for suffix in ("", "revoke/"):
            url = f"/teams/{team.pk}/keys/{api_key.api_key.pk}/{suffix}"
            assert client.post(url, {"name": "x"}).status_code == 404
    api_key.api_key.refresh_from_db()
    assert api_key.api_key.revoked_at is None
    assert api_key.api_key.name == "test"


def test_a_key_of_another_team_is_404_even_for_an_owner(as_owner, team, outsider_key):
    url = f"/teams/{team.pk}/keys/{outsider_key.api_key.pk}/revoke/"
    assert as_owner.post(url).status_code == 404
    outsider_key.api_key.refresh_from_db()
    assert outsider_key.api_key.revoked_at is None


def test_spend_this_month_per_key(as_owner, team, api_key):
    other = ApiKey.issue(team, name="other").api_key

    def record(key, cost, when):
        UsageRecord.objects.create(
            api_key=key, team=team, model="m", endpoint="/v1/audio/speech", status_code=200,
            request_id="r", cost=Decimal(cost), created_at=when,
        )  # fmt: skip

    now = timezone.now()
    record(api_key.api_key, "0.25", now)
    record(api_key.api_key, "0.50", now)
    record(api_key.api_key, "9.00", now.replace(day=1) - timedelta(days=1))  # last month
    record(other, "0.125", now)

    page = as_owner.get(f"/teams/{team.pk}/keys/").content.decode()
    spend = {
        key.name: key.month_spend for key in as_owner.get(f"/teams/{team.pk}/keys/").context["keys"]
    }

    assert spend == {"test": Decimal("0.75"), "other": Decimal("0.125")}
    assert "$0.7500" in page
    assert "$0.1250" in page


def test_a_key_limited_to_some_models_and_endpoints(as_owner, team):
    create(
        as_owner,
        team,
        allowed_models=["local/piper", "local/whisper-base"],
        allowed_endpoints=["/v1/audio/speech"],
    )
    key = ApiKey.objects.get(name="ci")
    assert key.allowed_models == ["local/piper", "local/whisper-base"]
    assert key.allowed_endpoints == ["/v1/audio/speech"]
    page = as_owner.get(f"/teams/{team.pk}/keys/").content.decode()
    assert "endpoints: /v1/audio/speech" in page

    refused = as_owner.post(
        f"/teams/{team.pk}/keys/", {"name": "bad", "allowed_models": ["no/such-model"]}
    )
    assert refused.status_code == 400
    assert not ApiKey.objects.filter(name="bad").exists()
