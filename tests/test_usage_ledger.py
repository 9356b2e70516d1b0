"""The usage ledger's one writer: a plain entry in, a row out."""

from decimal import Decimal

import pytest

from usage import ledger
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def _entry(api_key, **changes) -> ledger.LedgerEntry:
    fields = {
        "api_key_id": api_key.pk,
        "team_id": api_key.team_id,
        "model": "openai/whisper-large-v3",
        "endpoint": "/v1/audio/transcriptions",
        "status_code": 200,
        "request_id": "req_test",
        "provider": "whisper",
        "attempts": 1,
        "cost": Decimal("0.006"),
        "latency_ms": 12,
        "metered": ledger.Metered(audio_seconds_in=60),
    }
    return ledger.LedgerEntry(**{**fields, **changes})


async def test_an_entry_becomes_one_row(api_key):
    row_id = await ledger.record(_entry(api_key.api_key))
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert (stored.api_key_id, stored.team_id) == (api_key.api_key.pk, api_key.api_key.team_id)
    assert (stored.model, stored.endpoint) == (
        "openai/whisper-large-v3",
        "/v1/audio/transcriptions",
    )
    assert (stored.status_code, stored.request_id, stored.provider) == (200, "req_test", "whisper")
    assert (stored.cost, stored.audio_seconds_in, stored.latency_ms) == (Decimal("0.006"), 60, 12)


async def test_a_row_id_rewrites_that_row(api_key):
    row_id = await ledger.record(_entry(api_key.api_key, status_code=ledger.INTERRUPTED))
    again = await ledger.record(_entry(api_key.api_key, cost=Decimal("0.5")), row_id=row_id)
    assert again == row_id
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert (stored.status_code, stored.cost) == (200, Decimal("0.5"))
    assert await UsageRecord.objects.acount() == 1


async def test_a_rewritten_row_keeps_when_it_began(api_key):
    row_id = await ledger.record(_entry(api_key.api_key, status_code=ledger.INTERRUPTED))
    began = (await UsageRecord.objects.aget(pk=row_id)).created_at
    await ledger.record(_entry(api_key.api_key, latency_ms=900), row_id=row_id)
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert (stored.created_at, stored.latency_ms) == (began, 900)


async def test_every_quantity_is_stored_as_given(api_key):
    metered = ledger.Metered(
        audio_seconds_in=1.25,
        audio_seconds_out=2.5,
        characters=44,
        text_tokens_in=7,
        text_tokens_out=9,
        audio_tokens_in=13,
        audio_tokens_out=25,
    )
    cost = Decimal("0.00000123")  # the column's smallest step
    row_id = await ledger.record(_entry(api_key.api_key, metered=metered, cost=cost, attempts=3))
    stored = await UsageRecord.objects.aget(pk=row_id)
    assert {name: getattr(stored, name) for name in metered.as_fields()} == metered.as_fields()
    assert (stored.cost, stored.attempts) == (cost, 3)
    assert stored.created_at.tzinfo is not None
