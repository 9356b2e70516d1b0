"""What a chat completion reserves against a budget before anything runs.

Text: about four bytes of request per token in, and the whole reply budget out. Audio
parts: their duration in audio tokens (the catalog's `audio_tokens_per_second`), as they
are billed, first as their containers declare it and then as they decode; their base64
is not counted again as text.
"""

import math

from gateway.audio.reservation import Clip, admit_uploads
from gateway.chat.request import ChatRequest
from gateway.providers.base import AudioUpload
from gateway.providers.cascade import DEFAULT_AUDIO_TOKENS_PER_SECOND, audio_tokens
from usage.ledger import Charge
from usage.pricing import Metered


async def admit_chat(charge: Charge, chat: ChatRequest, body_size: int) -> None:
    """Admit the request (the OpenAI 4xx if refused), then archive its input audio."""
    parts = chat.audio_inputs()
    clips = [
        Clip(AudioUpload(content=part.data, filename=name), param=part.param)
        for part, (name, _) in zip(parts, chat.audio_uploads(), strict=True)
    ]
    base64_size = sum(4 * math.ceil(len(part.data) / 3) for part in parts)
    text_tokens_in = max(0, body_size - base64_size) // 4
    rate = float(
        charge.entry.options.get("audio_tokens_per_second", DEFAULT_AUDIO_TOKENS_PER_SECOND)
    )

    def estimate(seconds: float) -> Metered:
        return Metered(
            text_tokens_in=text_tokens_in,
            audio_tokens_in=audio_tokens(seconds, rate),
            text_tokens_out=chat.token_budget(),
        )

    await admit_uploads(charge, clips, estimate)
