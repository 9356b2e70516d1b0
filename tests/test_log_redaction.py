"""Keys and tokens are masked in every log line, messages and tracebacks alike."""

import io
import logging

import pytest

from core.log_redaction import RedactSecrets, redact

KEY = "lr_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg"


@pytest.fixture
def console():
    """The configured console handler, writing into a buffer for the test."""
    handler = next(
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactSecrets) for f in h.filters)
    )
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def test_keys_tokens_and_bearer_credentials_are_masked():
    line = redact(f"auth {KEY} then ek_eyJrIjoxfQ~1abc~sig123456 and Bearer sk-upstream-secret-42")
    assert KEY not in line
    assert "lr_live_AbCd****defg" in line
    assert "ek_eyJr****3456" in line
    assert "Bearer ****" in line
    assert "upstream-secret" not in line


def test_the_console_log_never_shows_a_key(console):
    logger = logging.getLogger("arouter.test")
    logger.warning("request with %s failed", KEY)
    try:
        raise ValueError(f"Incorrect API key provided: {KEY}")
    except ValueError:
        logger.exception("crash")

    output = console.getvalue()
    assert KEY not in output
    assert output.count("lr_live_AbCd****defg") == 2  # the message and the exception
    assert "ValueError" in output  # the traceback is still there, masked


def test_uvicorns_own_lines_are_masked_whatever_handlers_it_installed():
    """uvicorn may replace its loggers' handlers after Django's config (a server started
    in-process does); the filter sits on the loggers themselves, before any handler."""
    buffer = io.StringIO()
    probe = logging.StreamHandler(buffer)
    error_logger = logging.getLogger("uvicorn.error")
    error_logger.addHandler(probe)
    try:
        error_logger.error("Exception in ASGI application: %s", KEY)
    finally:
        error_logger.removeHandler(probe)
    assert KEY not in buffer.getvalue()
    assert "lr_live_AbCd****defg" in buffer.getvalue()


def test_uvicorns_no_access_log_survives_djangos_logging_config():
    """`make serve` runs uvicorn with --no-access-log; Django configures logging after
    uvicorn did (as the app is imported), and must not switch the access log back on."""
    import logging.config

    import uvicorn
    from django.conf import settings

    uvicorn.Config("arouter.asgi:application", access_log=False).configure_logging()
    logging.config.dictConfig(settings.LOGGING)

    access = logging.getLogger("uvicorn.access")
    assert access.propagate is False
    assert access.handlers == []
