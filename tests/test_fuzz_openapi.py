"""Schemathesis against /v1/openapi.json: every operation, with and without a key, gets
no 5xx, and every error is OpenAI's envelope.

Driven through schemathesis' Python API with Hypothesis directly (its pytest plugin does not
run under this pytest), one property per operation, against the live server.
"""

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

EXAMPLES_PER_OPERATION = 50
ENVELOPE_KEYS = {"message", "type", "param", "code"}


def assert_openai_shaped(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == ENVELOPE_KEYS, error
        assert isinstance(error["message"], str)
        assert error["message"]


def test_every_operation_answers_without_5xx_in_the_openai_envelope(arouter_server, live_key):
    schema = schemathesis.openapi.from_url(f"{arouter_server.url}/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7  # models, model, voices, speech, chat, transcriptions, translations

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def property_holds(case) -> None:
            assert_openai_shaped(case.call(headers={"Authorization": f"Bearer {live_key.raw}"}))
            anonymous = case.call(headers={"Authorization": ""})
            assert_openai_shaped(anonymous)
            if anonymous.status_code != 401:  # a path no route matches is 404 before auth
                assert anonymous.status_code == 404
                assert anonymous.json()["error"]["message"].startswith("Invalid URL")

        property_holds()
