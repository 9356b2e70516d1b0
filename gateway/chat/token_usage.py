"""Chat usage as the spec shows it, and the same numbers for the ledger.

Rules (one per quantity, documented in the README):
- audio tokens = ceil(seconds * the catalog entry's `options.audio_tokens_per_second`),
  for the audio heard (prompt) and the audio spoken (completion);
- text tokens come from the text model's own tokenizer. In a cascade the text model also
  reads the transcripts of the audio parts; those tokens are already billed as audio, so
  they are taken out of the prompt's text tokens;
- prompt_tokens = text + audio in, completion_tokens = text + audio out.
"""

from dataclasses import dataclass
from decimal import Decimal

from usage.ledger import Metered


@dataclass
class ChatUsage:
    text_in: int = 0
    audio_in: int = 0
    text_out: int = 0
    audio_out: int = 0
    audio_seconds_in: float = 0.0
    audio_seconds_out: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return self.text_in + self.audio_in

    @property
    def completion_tokens(self) -> int:
        return self.text_out + self.audio_out

    def meter(self, metered: Metered) -> None:
        metered.text_tokens_in = self.text_in
        metered.text_tokens_out = self.text_out
        metered.audio_tokens_in = self.audio_in
        metered.audio_tokens_out = self.audio_out
        metered.audio_seconds_in = round(self.audio_seconds_in, 3)
        metered.audio_seconds_out = round(self.audio_seconds_out, 3)

    def as_openai(self, cost: Decimal) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_details": {"audio_tokens": self.audio_in, "cached_tokens": 0},
            "completion_tokens": self.completion_tokens,
            "completion_tokens_details": {"audio_tokens": self.audio_out},
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost": float(cost),
        }
