"""Per-key and per-team limits, enforced before a provider is called."""

import base64
import logging
import time
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile

from gateway.audio.decode import declared_seconds
from quotas import counters
from quotas.admission import admit, estimated_audio_seconds
from quotas.models import Counter
from tests.audio_clips import silent_flac, understated
from tests.openai_errors import assert_error
from tests.streaming import body_of
from usage.models import UsageRecord, spent_this_month


@pytest.fixture(autouse=True)
def clean_counters():
    """Redis keeps counters between runs (the database's roll back with each test)."""
    counters._redis_counters = None
    counters._redis_down_until = 0.0
    if django_settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(django_settings.REDIS_URL)
        for key in client.scan_iter(f"{counters.PREFIX}*"):
            client.delete(key)
    yield
    counters._redis_counters = None
    counters._redis_down_until = 0.0


def fresh_minute() -> None:
    """Start well inside a minute window, so a test's requests share one."""
    if time.time() % 60 > 55:
        time.sleep(61 - time.time() % 60)


def speech(api, voice="alloy", model="local/piper", text="Hi."):
    response = api.post(
        "/v1/audio/speech",
        {"model": model, "voice": voice, "input": text, "response_format": "pcm"},
        content_type="application/json",
    )
    body_of(response)  # to its end, where the ledger row is written
    return response


def counter_value(prefix: str) -> int:
    """The one limits counter whose name starts with `prefix`, wherever counters live."""
    if django_settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(django_settings.REDIS_URL)
        (name,) = client.scan_iter(f"{counters.PREFIX}{prefix}*")
        return int(client.get(name))
    return Counter.objects.get(name__startswith=prefix).value


def limit(api_key, **fields) -> None:
    for name, value in fields.items():
        setattr(api_key.api_key, name, value)
    api_key.api_key.save()


def test_requests_per_minute_then_429_with_openai_headers(api, api_key):
    limit(api_key, requests_per_minute=2)
    fresh_minute()

    first = speech(api, voice="no-such-voice")  # refused after admission: still counts
    second = speech(api, voice="no-such-voice")
    third = speech(api)

    assert first.status_code == second.status_code == 400
    assert first["x-ratelimit-limit-requests"] == "2"
    assert first["x-ratelimit-remaining-requests"] == "1"
    assert second["x-ratelimit-remaining-requests"] == "0"
    assert third.status_code == 429
    error = third.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert "Limit 2" in error["message"]
    assert 1 <= int(third["retry-after"]) <= 60
    assert third["x-ratelimit-reset-requests"].endswith("s")
    # Refused before any provider ran: nothing in the ledger for it.
    assert UsageRecord.objects.filter(status_code=429).count() == 0


def test_keys_without_limits_cost_no_query(api_key, django_assert_num_queries):
    key = api_key.api_key
    assert key.team.pk  # loaded with the key, as authentication does
    with django_assert_num_queries(0):
        admission = async_to_sync(admit)(
            key, "local/piper", "/v1/audio/speech", Decimal(1), spent_this_month
        )
    assert admission.headers == {}
    assert Counter.objects.count() == 0


def test_model_allow_list(api, api_key):
    limit(api_key, allowed_models=["local/piper"])
    assert speech(api).status_code == 200
    response = speech(api, model="openai/tts-1")
    assert_error(response, 404, "model", "model_not_found")
    assert "does not exist or you do not have access to it" in response.json()["error"]["message"]


def test_endpoint_allow_list(api, api_key):
    limit(api_key, allowed_endpoints=["/v1/audio/transcriptions"])
    response = speech(api)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "permission_error"
    assert "/v1/audio/speech" in error["message"]


def test_key_budget_is_insufficient_quota_once_spent(api, api_key):
    limit(api_key, monthly_budget_usd=Decimal("0.00"))
    response = speech(api)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error == {
        "message": error["message"],
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    assert "API key" in error["message"]


def test_team_budget_covers_all_its_keys(api, api_key, team):
    UsageRecord.objects.create(
        api_key=api_key.api_key, team=team, model="local/piper", endpoint="/v1/audio/speech",
        status_code=200, request_id="earlier", cost=Decimal("5.00"),
    )  # fmt: skip
    team.monthly_budget_usd = Decimal("5.00")
    team.save()
    api_key.api_key.save()  # drop the cached key, which carries its team

    response = speech(api)

    assert response.status_code == 429
    assert "team" in response.json()["error"]["message"]


def test_reservation_is_settled_to_the_charged_cost(api, api_key):
    limit(api_key, monthly_budget_usd=Decimal("1.00"))
    assert speech(api, voice="no-such-voice").status_code == 400  # reserved, then released
    assert speech(api, text="Hello there.").status_code == 200

    charged = UsageRecord.objects.get(status_code=200).cost
    assert counter_value(f"spend:key:{api_key.api_key.pk}:") == int(charged * 1_000_000)


def test_redis_down_falls_back_to_the_database_with_a_warning(api, api_key, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    limit(api_key, requests_per_minute=1)
    fresh_minute()
    with caplog.at_level(logging.WARNING, logger="quotas.counters"):
        assert speech(api).status_code == 200
        assert speech(api).status_code == 429
    assert "using the database limiter" in caplog.text
    assert Counter.objects.filter(name__startswith=f"rpm:{api_key.api_key.pk}:").get().value == 2


# --- audio is reserved at its duration, whatever its size -----------------------------------

# 300 s at local/whisper-base's $0.006 a minute: $0.03, in a FLAC of a few kilobytes.
FIVE_MINUTES_OF_SILENCE = silent_flac(300)


def speech_to_text(api, audio: bytes, endpoint: str = "transcriptions"):
    return api.post(
        f"/v1/audio/{endpoint}",
        {
            "model": "local/whisper-base",
            "file": SimpleUploadedFile("silence.flac", audio, "audio/flac"),
        },
    )


def assert_insufficient_quota(response) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "insufficient_quota"


def test_a_small_file_of_long_audio_is_reserved_at_its_duration():
    size = len(FIVE_MINUTES_OF_SILENCE)
    assert estimated_audio_seconds(size) < 10  # what its size alone suggests
    assert declared_seconds(FIVE_MINUTES_OF_SILENCE) == 300.0
    assert estimated_audio_seconds(size, declared=300.0) == 300.0
    # Nothing past the decoding limit is ever billed, so nothing past it is reserved.
    assert estimated_audio_seconds(size, declared=1e9) == django_settings.AROUTER_MAX_AUDIO_SECONDS


@pytest.mark.parametrize("endpoint", ["transcriptions", "translations"])
def test_audio_dearer_than_the_budget_is_refused_before_the_engine(api, api_key, endpoint):
    limit(api_key, monthly_budget_usd=Decimal("0.01"), max_concurrent_requests=1)

    response = speech_to_text(api, FIVE_MINUTES_OF_SILENCE, endpoint)

    assert_insufficient_quota(response)
    assert UsageRecord.objects.count() == 0  # no engine ran, nothing billed
    assert counter_value(f"spend:key:{api_key.api_key.pk}:") == 0
    assert counter_value(f"inflight:{api_key.api_key.pk}") == 0  # the slot is free again


def test_a_header_that_understates_the_audio_does_not_get_past_the_budget(api, api_key):
    limit(api_key, monthly_budget_usd=Decimal("0.01"), max_concurrent_requests=1)
    lying = understated(FIVE_MINUTES_OF_SILENCE, seconds=1)
    assert declared_seconds(lying) == 1.0  # admitted on its word: $0.0001...

    response = speech_to_text(api, lying)

    assert_insufficient_quota(response)  # ...refused once decoded to its 300 s
    assert UsageRecord.objects.count() == 0
    # Refused after admission, it gave its reservation and its slot back.
    assert counter_value(f"spend:key:{api_key.api_key.pk}:") == 0
    assert counter_value(f"inflight:{api_key.api_key.pk}") == 0
    # And with the budget for it, it is billed what it decodes to.
    limit(api_key, monthly_budget_usd=Decimal("1.00"))
    answered = speech_to_text(api, lying)
    assert answered.status_code == 200, answered.content
    assert answered.json()["usage"]["seconds"] == 300
    assert counter_value(f"spend:key:{api_key.api_key.pk}:") == 30_000  # micro-dollars


@pytest.mark.parametrize("header", ["honest", "understated"])
def test_chat_input_audio_is_reserved_at_its_duration(api, api_key, header):
    # 3,000 audio tokens at local/audio-chat's $40 a million: $0.12 for the audio alone,
    # where four bytes of base64 per token would have guessed about a tenth of that.
    limit(api_key, monthly_budget_usd=Decimal("0.10"))
    clip = FIVE_MINUTES_OF_SILENCE
    if header == "understated":
        clip = understated(clip, seconds=1)
    audio = {"data": base64.b64encode(clip).decode(), "format": "flac"}
    response = api.post(
        "/v1/chat/completions",
        {
            "model": "local/audio-chat",
            "max_completion_tokens": 1,
            "messages": [
                {"role": "user", "content": [{"type": "input_audio", "input_audio": audio}]}
            ],
        },
        content_type="application/json",
    )

    assert_insufficient_quota(response)
    assert UsageRecord.objects.count() == 0
    assert counter_value(f"spend:key:{api_key.api_key.pk}:") == 0
