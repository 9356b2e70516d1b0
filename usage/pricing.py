"""Pricing in one place: what a request consumed, and what that costs under a model's prices."""

from dataclasses import dataclass, fields
from decimal import Decimal

from gateway.catalog import Pricing

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.00000001")


@dataclass
class Metered:
    """Quantities a request consumed, filled in by the view while it runs."""

    audio_seconds_in: float = 0.0
    audio_seconds_out: float = 0.0
    characters: int = 0
    text_tokens_in: int = 0
    text_tokens_out: int = 0
    audio_tokens_in: int = 0
    audio_tokens_out: int = 0

    def as_fields(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def cost_of(pricing: Pricing, metered: Metered) -> Decimal:
    minutes = Decimal(str(metered.audio_seconds_in)) / 60
    cost = (
        minutes * pricing.per_audio_minute
        + metered.characters * pricing.per_million_characters / MILLION
        + metered.text_tokens_in * pricing.per_million_text_input_tokens / MILLION
        + metered.text_tokens_out * pricing.per_million_text_output_tokens / MILLION
        + metered.audio_tokens_in * pricing.per_million_audio_input_tokens / MILLION
        + metered.audio_tokens_out * pricing.per_million_audio_output_tokens / MILLION
    )
    return cost.quantize(COST_QUANTUM)
