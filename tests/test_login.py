"""Session login, which the playground's websocket uses instead of a raw key."""


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
