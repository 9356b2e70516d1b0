"""What a request's consumption costs under a model's prices."""

from decimal import Decimal

import pytest

from gateway.catalog import Pricing
from gateway.pricing import audio_tokens, cost_of
from usage.ledger import Metered


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


@pytest.mark.parametrize(
    ("seconds", "rate", "tokens"),
    [(0, 10, 0), (0.01, 10, 1), (1.0, 10, 10), (1.05, 10, 11), (2.5, 4, 10)],
)
def test_audio_tokens_round_up_per_second_rate(seconds, rate, tokens):
    assert audio_tokens(seconds, rate) == tokens
