"""Every /v1 failure is the OpenAI envelope with the right status, and every response has
an x-request-id."""

import json

import pytest
from django.http import HttpResponse, HttpResponseServerError
from django.test import RequestFactory

from gateway.api import unhandled, validation_param
from gateway.middleware import RequestIdMiddleware

ENVELOPE_KEYS = {"message", "type", "param", "code"}


def assert_envelope(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == ENVELOPE_KEYS
    return body["error"]


@pytest.mark.parametrize("path", ["/v1/nope", "/v1", "/v1/audio/nothing-here"])
def test_unknown_route_is_openai_404(api, path):
    error = assert_envelope(api.get(path), 404)
    assert error["message"] == f"Invalid URL (GET {path})"
    assert error["type"] == "invalid_request_error"


def test_wrong_method_is_an_envelope(api):
    response = api.delete("/v1/models")
    assert response.status_code in (404, 405)
    assert_envelope(response, response.status_code)


def test_validation_error_is_400_with_param(api):
    error = assert_envelope(api.get("/v1/models?input_modalities=smell"), 400)
    assert error["param"] == "input_modalities"
    assert "input_modalities" in error["message"]


def test_every_response_has_a_request_id(api, client, db):
    ids = {
        api.get("/v1/models")["x-request-id"],
        api.get("/v1/nope")["x-request-id"],
        client.get("/v1/models")["x-request-id"],
    }
    assert len(ids) == 3
    assert all(request_id.startswith("req_") for request_id in ids)


def test_unhandled_exception_is_500_without_internals(caplog):
    request = RequestFactory().get("/v1/models")
    response = unhandled(request, RuntimeError("secret at /srv/internal/path"))
    error = assert_envelope(response, 500)
    assert error["type"] == "server_error"
    assert "secret" not in json.dumps(error)


def test_html_errors_under_v1_become_envelopes():
    request = RequestFactory().get("/v1/models")
    middleware = RequestIdMiddleware(lambda request: HttpResponseServerError("<h1>boom</h1>"))
    error = assert_envelope(middleware(request), 500)
    assert "boom" not in error["message"]


def test_pages_outside_v1_are_left_alone():
    request = RequestFactory().get("/somewhere")
    middleware = RequestIdMiddleware(lambda request: HttpResponse("<p>page</p>", status=404))
    response = middleware(request)
    assert response.content == b"<p>page</p>"
    assert response["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("query", "output_modalities"), "output_modalities"),
        (("body", "payload", "input"), "input"),
        (
            ("body", "payload", "messages", 0, "content", 1, "input_audio", "data"),
            "messages[0].content[1].input_audio.data",
        ),
        (("form", "model"), "model"),
        (("body",), None),
    ],
)
def test_validation_locations_become_openai_param_names(loc, param):
    assert validation_param(loc) == param


def test_openapi_and_docs_are_served_offline(client, db):
    schema = client.get("/v1/openapi.json").json()
    assert "/v1/models" in schema["paths"]
    docs = client.get("/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs
    assert "cdn." not in docs
