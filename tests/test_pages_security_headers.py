"""Every page, and the API docs under /v1, carry the Content-Security-Policy and refuse
to be framed (the docs skip the browser middleware, which gives the pages theirs)."""

import pytest
from django.conf import settings
from django.test import Client

from tests.pages import logged_in

DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "media-src": "'self' blob:",
    "object-src": "'none'",
    "frame-ancestors": "'none'",
}


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def assert_page_headers(response) -> None:
    assert response.status_code == 200, response
    assert policy(response).items() >= DIRECTIVES.items()
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/teams/{team}/",
        "/teams/{team}/keys/",
        "/teams/{team}/usage/",
        "/teams/{team}/playground/",
        "/teams/{team}/keys/{key}/revoke/",
    ],
)
def test_dashboard_pages(owner, team, api_key, path):
    assert_page_headers(logged_in(owner).get(path.format(team=team.pk, key=api_key.api_key.pk)))


@pytest.mark.parametrize("path", ["/accounts/login/", "/signup/", "/admin/login/"])
def test_pages_before_log_in(db, path):
    assert_page_headers(Client().get(path))


def test_error_pages_and_static_files(db):
    """The policy wraps the whole page chain, so answers made before any view have it."""
    assert "Content-Security-Policy" in Client().get("/no/such/page/")
    assert "Content-Security-Policy" in Client().get("/static/js/copy.js")


def test_the_api_docs(db):
    response = Client().get("/v1/docs")
    assert_page_headers(response)
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    assert response["Referrer-Policy"] == "same-origin"


def test_api_answers_are_left_alone(api):
    """JSON for SDKs: no page headers to pay for on every call."""
    response = api.get("/v1/models")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response
