"""Page middleware (sessions, CSRF, security headers) runs for pages and not for /v1."""

from django.test import AsyncClient, Client


def test_pages_get_sessions_csrf_and_security_headers(db):
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_csrf_is_enforced_on_page_posts(owner):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/accounts/login/", {"username": "owner", "password": "owner-password-1"}
    )
    assert response.status_code == 403


def test_csrf_token_lets_the_post_through(owner):
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/accounts/login/",
        {"username": "owner", "password": "owner-password-1", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


def test_api_requests_skip_page_middleware(api):
    response = api.get("/v1/models")
    assert response.status_code == 200
    assert "csrftoken" not in response.cookies
    assert "sessionid" not in response.cookies
    assert not response.has_header("X-Frame-Options")


def test_static_files_are_served(client, db):
    assert client.get("/static/css/arouter.css").status_code == 200


async def test_async_stack_serves_pages_and_enforces_csrf(transactional_db, async_client):
    page = await async_client.get("/accounts/login/")
    assert page.status_code == 200
    assert "csrftoken" in page.cookies
    refused = await AsyncClient(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "x", "password": "y"}
    )
    assert refused.status_code == 403
