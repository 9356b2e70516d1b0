"""Limits under real concurrency, against the live server: budgets, in-flight slots, SDK."""

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.audio_clips import understated
from tests.test_limits import FIVE_MINUTES_OF_SILENCE, clean_counters, fresh_minute  # noqa: F401
from tests.upstream_helpers import catalog_from
from usage.models import UsageRecord

# An alias of local Piper at a dollar per character: "Hi." costs exactly $3.
PRICEY = """
[models."pricey/piper"]
alias_of = "local/piper"
price = { per_million_characters = 1000000 }
"""


@pytest.fixture
def pricey_catalog(tmp_path):
    base = Path(__file__).resolve().parent.parent / "gateway" / "catalog.toml"
    with catalog_from(tmp_path / "catalog.toml", base.read_text() + PRICEY):
        yield


def speak(
    base_url: str, key: str, text: str = "Hi.", model: str = "pricey/piper"
) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/audio/speech",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "voice": "alloy", "input": text, "response_format": "pcm"},
        timeout=120,
    )


def test_fifty_concurrent_requests_cannot_overspend_a_budget_for_ten(
    arouter_server, live_key, pricey_catalog
):
    key = live_key.api_key
    key.monthly_budget_usd = Decimal("30.00")  # ten requests at $3
    key.save()

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: speak(arouter_server.url, live_key.raw), range(50)))

    succeeded = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(succeeded) + len(refused) == 50
    assert 10 <= len(succeeded) <= 11
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    spent = sum(UsageRecord.objects.filter(api_key=key).values_list("cost", flat=True))
    assert spent <= Decimal("33.00")  # the budget plus at most one request's cost
    assert UsageRecord.objects.filter(api_key=key).count() == len(succeeded)


def transcribe(base_url: str, key: str, audio: bytes) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        data={"model": "local/whisper-base"},
        files={"file": ("silence.flac", audio, "audio/flac")},
        timeout=300,
    )


# ($0.01: none of them fits; $0.10: three do), each 60 KB of FLAC with 300 s of silence at
# $0.03, its header honest or claiming a single second.
@pytest.mark.parametrize("budget", ["0.01", "0.10"])
@pytest.mark.parametrize("header", ["honest", "understated"])
def test_concurrent_small_files_of_long_audio_cannot_overspend_a_budget(
    arouter_server, live_key, budget, header
):
    key = live_key.api_key
    key.monthly_budget_usd = Decimal(budget)
    key.save()
    audio = FIVE_MINUTES_OF_SILENCE
    if header == "understated":
        audio = understated(audio, seconds=1)
    assert len(audio) < 64_000  # a size guess would reserve 4 s, a cent is 100 s

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda _: transcribe(arouter_server.url, live_key.raw, audio), range(8))
        )

    succeeded = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    fits = int(Decimal(budget) / Decimal("0.03"))
    # The budget plus at most one request's estimate, as the README promises.
    assert fits <= len(succeeded) <= fits + 1
    assert {(r.status_code, r.json()["error"]["code"]) for r in refused} == {
        (429, "insufficient_quota")
    }
    assert all(r.json()["usage"]["seconds"] == 300 for r in succeeded)
    spent = sum(UsageRecord.objects.filter(api_key=key).values_list("cost", flat=True))
    assert spent <= Decimal(budget) + Decimal("0.03")
    assert UsageRecord.objects.filter(api_key=key).count() == len(succeeded)


def test_a_held_stream_takes_the_only_slot_until_it_ends(arouter_server, live_key):
    key = live_key.api_key
    key.max_concurrent_requests = 1
    key.save()
    # Distinct sentences, each made in turn (and about a minute of speech in all).
    long_text = " ".join(f"Sentence number {n} keeps the stream open." for n in range(40))

    with httpx.Client(base_url=arouter_server.url, timeout=120) as client:
        headers = {"Authorization": f"Bearer {live_key.raw}"}
        body = {
            "model": "local/piper",
            "voice": "alloy",
            "input": long_text,
            "response_format": "pcm",
        }
        with client.stream("POST", "/v1/audio/speech", headers=headers, json=body) as held:
            assert held.status_code == 200
            chunks = held.iter_bytes()  # kept: dropping the iterator would hang up
            assert next(chunks)  # the first sentence is here, the rest is coming
            second = client.post("/v1/audio/speech", headers=headers, json={**body, "input": "Hi."})
            assert second.status_code == 429
            assert second.json()["error"]["code"] == "rate_limit_exceeded"
            assert "concurrent" in second.json()["error"]["message"]
            assert second.headers["retry-after"] == "1"
        # Leaving the block hangs up mid-stream: the server stops, bills what it sent, and
        # gives the slot back as it writes that ledger row.
        for _ in range(50):
            third = client.post("/v1/audio/speech", headers=headers, json={**body, "input": "Hi."})
            if third.status_code == 200:
                break
            time.sleep(0.1)
        assert third.status_code == 200


def test_the_sdk_sees_rate_limit_error(openai_client, live_key):
    key = live_key.api_key
    key.requests_per_minute = 1
    key.save()
    fresh_minute()

    openai_client.audio.speech.create(model="local/piper", voice="alloy", input="Hi.").read()
    with pytest.raises(openai.RateLimitError) as refused:
        openai_client.audio.speech.create(model="local/piper", voice="alloy", input="Hi.")

    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "1"
