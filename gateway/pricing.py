"""What a request's consumption costs under a catalog model's prices (one place)."""

import math
from decimal import Decimal

from gateway.catalog import ModelEntry, Pricing
from usage.ledger import Metered

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.00000001")
# Audio tokens a second of audio counts as, where a catalog entry names no
# `options.audio_tokens_per_second`.
DEFAULT_AUDIO_TOKENS_PER_SECOND = 10


def audio_tokens(seconds: float, per_second: float) -> int:
    """The catalog's one rule: audio tokens = ceil(seconds * audio_tokens_per_second)."""
    return math.ceil(round(seconds * per_second, 6)) if seconds > 0 else 0


def audio_tokens_per_second(entry: ModelEntry) -> float:
    return float(entry.options.get("audio_tokens_per_second", DEFAULT_AUDIO_TOKENS_PER_SECOND))


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
