"""Checking OpenAI's error envelope: `{"error": {message, type, param, code}}`."""


def assert_error(response, status: int, param: str | None, code: str | None = None) -> dict:
    """The envelope of a 4xx `invalid_request_error` answer, with its param (and code)."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code:
        assert error["code"] == code
    return error
