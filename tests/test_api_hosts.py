"""ALLOWED_HOSTS applies to /v1 as to the pages: a Host not served is a 400, in OpenAI's
envelope under /v1 (which skips the browser middleware where pages get Django's check)."""

import httpx
import pytest
from django.test import Client

from tests.openai_errors import assert_error


def api_client(api_key, host: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {api_key.raw}"}, HTTP_HOST=host)


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example:8000", "localhost@x"])
def test_an_api_call_to_a_host_not_served_is_a_400_envelope(api_key, host):
    response = api_client(api_key, host).get("/v1/models")

    error = assert_error(response, 400, None, "invalid_host")
    assert "Host" in error["message"]
    assert response["x-request-id"].startswith("req_")


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "[::1]:8000", "testserver"])
def test_an_api_call_to_a_served_host_is_answered(api_key, host):
    response = api_client(api_key, host).get("/v1/models")
    assert response.status_code == 200
    assert response.json()["object"] == "list"


def test_the_api_docs_check_the_host_too(db):
    assert Client(HTTP_HOST="localhost").get("/v1/docs").status_code == 200
    assert_error(Client(HTTP_HOST="evil.example").get("/v1/docs"), 400, None, "invalid_host")


def test_pages_keep_djangos_own_400(db):
    assert Client(HTTP_HOST="evil.example").get("/accounts/login/").status_code == 400


def test_a_changed_setting_applies_with_its_wildcards(api_key, settings):
    settings.ALLOWED_HOSTS = [".example.com"]
    assert api_client(api_key, "api.example.com").get("/v1/models").status_code == 200
    assert api_client(api_key, "localhost").get("/v1/models").status_code == 400
    settings.ALLOWED_HOSTS = ["localhost"]
    assert api_client(api_key, "api.example.com").get("/v1/models").status_code == 400
    assert api_client(api_key, "localhost").get("/v1/models").status_code == 200


def test_the_live_server_refuses_a_host_not_served(arouter_server, live_key):
    """Over a real socket, through the ASGI handler's /v1 fast path."""
    headers = {"Authorization": f"Bearer {live_key.raw}"}
    with httpx.Client(base_url=arouter_server.url, headers=headers) as client:
        refused = client.get("/v1/models", headers={"Host": "evil.example"})
        served = client.get("/v1/models")

    assert_error(refused, 400, None, "invalid_host")
    assert served.status_code == 200
