"""Session login, which the playground's websocket uses instead of a raw key, and its
throttling (the site's log-in and the admin's)."""

import pytest
from django.contrib.auth.models import User
from django.test import Client


def test_login_page_renders(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_owner_can_log_in(client, owner):
    response = client.post(
        "/accounts/login/", {"username": "owner", "password": "owner-password-1"}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(owner.pk)


def test_wrong_password_is_refused(client, owner):
    response = client.post("/accounts/login/", {"username": "owner", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


# --- throttling: one counter per person and address, whatever the spelling or the page ---

RIGHT = "owner-password-1"
# Spellings counted as 'owner': fullwidth letters (which Django's username field folds to
# 'owner' with NFKC) and capitals.
LOOK_ALIKES = ("ｏｗｎｅｒ", "ｏwner", "owｎer", "OWNER")


def fail(client: Client, username: str, url: str = "/accounts/login/") -> None:
    assert client.post(url, {"username": username, "password": "wrong"}).status_code == 200


def test_a_look_alike_username_logs_in_as_the_user_it_folds_to(client, owner):
    """Why look-alikes must share the count: Django accepts them as the same person."""
    response = client.post("/accounts/login/", {"username": LOOK_ALIKES[0], "password": RIGHT})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(owner.pk)


def test_look_alike_usernames_share_one_count(owner, settings, fresh_cache):
    settings.AROUTER_LOGIN_ATTEMPTS = 3
    client = Client()
    for username in LOOK_ALIKES[:3]:
        fail(client, username)

    locked = client.post("/accounts/login/", {"username": "owner", "password": RIGHT})

    assert locked.status_code == 429
    assert b"Too many failed log-in attempts" in locked.content
    assert "_auth_user_id" not in client.session
    # Any spelling of the same name waits too.
    for username in LOOK_ALIKES:
        again = client.post("/accounts/login/", {"username": username, "password": RIGHT})
        assert again.status_code == 429


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("boss", password="boss-password-1", is_staff=True)


def test_the_admin_log_in_works(client, staff):
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "boss", "password": "boss-password-1"}
    )
    assert response.status_code == 302
    assert response.url == "/admin/"
    assert client.session["_auth_user_id"] == str(staff.pk)


def test_the_admin_log_in_is_throttled_with_the_same_counts(staff, settings, fresh_cache):
    settings.AROUTER_LOGIN_ATTEMPTS = 3
    client = Client()
    fail(client, "boss", "/admin/login/")
    fail(client, "ｂｏｓｓ", "/admin/login/")
    fail(client, "boss", "/accounts/login/")  # the site's log-in counts for the admin's

    right = {"username": "boss", "password": "boss-password-1"}
    for url in ("/admin/login/", "/accounts/login/"):
        locked = client.post(url, right)
        assert locked.status_code == 429, url
        assert b"Too many failed log-in attempts" in locked.content
    assert "_auth_user_id" not in client.session
    # Another address is not paused.
    other = Client(REMOTE_ADDR="10.0.0.9").post("/admin/login/", right)
    assert other.status_code == 302
