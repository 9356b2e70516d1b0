"""What a chat completion reserves against a budget before anything runs.

Text: about four bytes of request per token in, and the whole reply budget out. Audio
parts: their duration in audio tokens (the catalog's `audio_tokens_per_second`), as they
are billed, first as their containers declare it and then as they decode; their base64
is not counted again as text.
"""

import math

from gateway.audio.reservation import Clip, admit_uploads
from gateway.chat.request import ChatRequest
from gateway.lifecycle import MeteredCall
from gateway.pricing import audio_tokens, audio_tokens_per_second
from gateway.providers.base import AudioUpload
from usage.ledger import Metered


async def admit_chat(call: MeteredCall, chat: ChatRequest, body_size: int) -> None:
    """Admit the request (the OpenAI 4xx if refused), then archive its input audio."""
    parts = chat.audio_inputs()
    clips = [
        Clip(AudioUpload(content=part.data, filename=name), param=part.param)
        for part, (name, _) in zip(parts, chat.audio_uploads(), strict=True)
    ]
    base64_size = sum(4 * math.ceil(len(part.data) / 3) for part in parts)
    text_tokens_in = max(0, body_size - base64_size) // 4
    rate = audio_tokens_per_second(call.entry)

    def estimate(seconds: float) -> Metered:
        return Metered(
            text_tokens_in=text_tokens_in,
            audio_tokens_in=audio_tokens(seconds, rate),
            text_tokens_out=chat.token_budget(),
        )

    await admit_uploads(call, clips, estimate)
