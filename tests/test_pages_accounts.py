"""Sign-up, log-in throttling, home and password change."""

from django.contrib.auth.models import User
from django.test import Client

from accounts.models import Membership
from tests.pages import logged_in


def test_sign_up_logs_in_with_a_team_of_ones_own(db):
    client = Client()
    response = client.post(
        "/signup/",
        {
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password1": "a-long-pass-phrase-1",
            "password2": "a-long-pass-phrase-1",
        },
    )

    user = User.objects.get(username="newcomer")
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert response.url == f"/teams/{membership.team_id}/"
    assert client.get(response.url).status_code == 200


def test_sign_up_refuses_mismatched_passwords(db):
    response = Client().post(
        "/signup/",
        {"username": "x", "email": "x@example.com", "password1": "a-long-1", "password2": "b"},
    )
    assert response.status_code == 200
    assert b"didn" in response.content  # "The two password fields didn't match."
    assert not User.objects.filter(username="x").exists()


def test_personal_team_names_do_not_collide(db):
    for _ in range(2):
        client = Client()
        name = f"sam{User.objects.count()}"
        client.post(
            "/signup/",
            {"username": name, "email": f"{name}@example.com",
             "password1": "a-long-pass-phrase-1", "password2": "a-long-pass-phrase-1"},
        )  # fmt: skip
    assert Membership.objects.count() == 2


def test_home_sends_anonymous_visitors_to_log_in(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_home_goes_straight_to_the_only_team(as_owner, team):
    assert as_owner.get("/").url == f"/teams/{team.pk}/"
    assert b"acme" in as_owner.get("/?teams").content


def test_creating_a_team_makes_the_creator_its_owner(as_owner, owner):
    response = as_owner.post("/teams/new/", {"name": "research"})
    membership = Membership.objects.get(user=owner, team__name="research")
    assert membership.role == Membership.Role.OWNER
    assert response.url == f"/teams/{membership.team_id}/"


def test_team_names_are_unique(as_owner, team):
    response = as_owner.post("/teams/new/", {"name": "ACME"})
    assert response.status_code == 400
    assert b"already exists" in response.content


def test_failed_log_ins_are_throttled_per_username_and_address(owner, settings, fresh_cache):
    settings.AROUTER_LOGIN_ATTEMPTS = 3
    client = Client()
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "owner", "password": "wrong"})
        assert response.status_code == 200

    # Now even the right password waits.
    locked = client.post("/accounts/login/", {"username": "owner", "password": "owner-password-1"})
    assert locked.status_code == 429
    assert b"Too many failed log-in attempts" in locked.content
    assert "_auth_user_id" not in client.session

    # Another username from the same address is not affected.
    User.objects.create_user("other", password="other-password-1")
    other = client.post("/accounts/login/", {"username": "other", "password": "other-password-1"})
    assert other.status_code == 302


def test_a_successful_log_in_clears_earlier_failures(owner, settings, fresh_cache):
    settings.AROUTER_LOGIN_ATTEMPTS = 3
    client = Client()
    # Twice two failures then a success: were failures not cleared, the second round would
    # reach the limit of three and lock the right password out.
    for _ in range(2):
        for _ in range(2):
            client.post("/accounts/login/", {"username": "owner", "password": "wrong"})
        right = {"username": "owner", "password": "owner-password-1"}
        assert client.post("/accounts/login/", right).status_code == 302
        client.logout()


def test_password_change(owner):
    client = logged_in(owner)
    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": "owner-password-1",
            "new_password1": "another-pass-phrase-2",
            "new_password2": "another-pass-phrase-2",
        },
    )
    assert response.url == "/accounts/password_change/done/"
    owner.refresh_from_db()
    assert owner.check_password("another-pass-phrase-2")


def test_every_form_refuses_a_post_without_its_csrf_token(owner, team, member, api_key):
    client = logged_in(owner, enforce_csrf=True)
    other = Membership.objects.get(user=member)
    key = api_key.api_key.pk
    for url, data in [
        ("/teams/new/", {"name": "x"}),
        (f"/teams/{team.pk}/keys/", {"name": "k"}),
        (f"/teams/{team.pk}/keys/{key}/", {"name": "renamed"}),
        (f"/teams/{team.pk}/keys/{key}/revoke/", {}),
        (f"/teams/{team.pk}/invitations/", {"email": "a@example.com", "role": "member"}),
        (f"/teams/{team.pk}/members/{other.pk}/role/", {"role": "admin"}),
        (f"/teams/{team.pk}/members/{other.pk}/remove/", {}),
        (f"/teams/{team.pk}/leave/", {}),
        (f"/teams/{team.pk}/budget/", {"monthly_budget_usd": "1"}),
        ("/invitations/any-token/", {}),
        ("/accounts/password_change/", {}),
        ("/accounts/logout/", {}),
        (f"/teams/{team.pk}/playground/session", {"key_id": str(key)}),
    ]:
        assert client.post(url, data).status_code == 403, url
    api_key.api_key.refresh_from_db()
    assert api_key.api_key.revoked_at is None
    assert Membership.objects.filter(pk=other.pk, role="member").exists()
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post("/signup/", {}).status_code == 403
    assert anonymous.post("/accounts/login/", {}).status_code == 403
