"""Pricing and the usage ledger."""

from decimal import Decimal

import pytest
from django.test import RequestFactory

from gateway.catalog import Pricing, catalog
from usage.ledger import Charge
from usage.models import UsageRecord
from usage.pricing import Metered, cost_of


def test_cost_per_audio_minute():
    pricing = Pricing(per_audio_minute=Decimal("0.006"))
    assert cost_of(pricing, Metered(audio_seconds_in=90)) == Decimal("0.00900000")


def test_cost_per_million_characters():
    pricing = Pricing(per_million_characters=Decimal(15))
    assert cost_of(pricing, Metered(characters=1000)) == Decimal("0.01500000")


def test_cost_per_token_kind():
    pricing = Pricing(
        per_million_text_input_tokens=Decimal("2.5"),
        per_million_text_output_tokens=Decimal(10),
        per_million_audio_input_tokens=Decimal(40),
        per_million_audio_output_tokens=Decimal(80),
    )
    metered = Metered(
        text_tokens_in=50, text_tokens_out=20, audio_tokens_in=100, audio_tokens_out=30
    )
    expected = (50 * Decimal("2.5") + 20 * 10 + 100 * 40 + 30 * 80) / Decimal(1_000_000)
    assert cost_of(pricing, metered) == expected.quantize(Decimal("0.00000001"))


def _request(api_key):
    request = RequestFactory().post("/v1/audio/transcriptions")
    request.auth = api_key
    request.request_id = "req_test"
    return request


@pytest.mark.django_db(transaction=True)
async def test_charge_records_one_row_with_cost(api_key):
    entry = catalog().get("openai/whisper-large-v3")
    charge = Charge(_request(api_key.api_key), entry, "/v1/audio/transcriptions")
    charge.metered.audio_seconds_in = 60
    record = await charge.record(200)
    stored = await UsageRecord.objects.aget(pk=record.pk)
    assert stored.team_id == api_key.api_key.team_id
    assert stored.api_key_id == api_key.api_key.pk
    assert stored.model == "openai/whisper-large-v3"
    assert stored.cost == Decimal("0.006")
    assert stored.audio_seconds_in == 60
    assert stored.request_id == "req_test"
    assert stored.provider == "whisper"


@pytest.mark.django_db(transaction=True)
async def test_failed_requests_are_recorded_at_no_cost(api_key):
    entry = catalog().get("openai/tts-1")
    charge = Charge(_request(api_key.api_key), entry, "/v1/audio/speech")
    charge.metered.characters = 500
    record = await charge.record(502)
    assert record.status_code == 502
    assert record.cost == 0
    assert record.characters == 500


@pytest.mark.django_db(transaction=True)
async def test_recording_again_returns_the_first_row_instead_of_billing_twice(api_key):
    entry = catalog().get("openai/tts-1")
    charge = Charge(_request(api_key.api_key), entry, "/v1/audio/speech")
    charge.metered.characters = 500
    first = await charge.record(200)

    again = await charge.record(500)  # an error path reached after the row was written

    assert again.pk == first.pk
    assert await UsageRecord.objects.filter(api_key=api_key.api_key).acount() == 1
    stored = await UsageRecord.objects.aget(pk=first.pk)
    assert (stored.status_code, stored.cost) == (200, first.cost)
