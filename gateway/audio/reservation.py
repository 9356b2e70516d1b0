"""Admitting a request that carries audio: reserve what the audio will cost, then keep it.

Audio is billed by its decoded duration, which its size does not tell (300 s of silence
is a 60 KB FLAC). So a request first reserves the duration its containers declare (read
from their headers, cheap) and, when a budget applies, the duration they decode to,
before any engine runs: a header that claims less than the file holds changes nothing.
Only then, admitted, are the uploads archived (AROUTER_KEEP_UPLOADS_DIR): a refused
request leaves nothing behind.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.audio import archive
from gateway.audio.decode import declared_seconds, decoded_seconds
from gateway.errors import OpenAIError, invalid_param
from gateway.providers.base import AudioUpload
from limits.admission import estimated_audio_seconds, has_budget
from usage.ledger import Charge
from usage.pricing import Metered, cost_of

T = TypeVar("T")


@dataclass(frozen=True)
class Clip:
    """One uploaded audio file of a request."""

    upload: AudioUpload
    # Where it sat in a JSON body, for errors about its content; None: the `file` field.
    param: str | None = None


async def admit_uploads(
    charge: Charge, clips: list[Clip], estimate: Callable[[float], Metered]
) -> None:
    """Admit `charge` with `estimate(seconds of audio)`, then archive its clips.

    A key without a budget is admitted on a size guess (the reservation is not used) and
    pays for no probe or decode here. With a budget, a clip that cannot be decoded is the
    400 the engine would answer, recorded at no cost.
    """
    budgeted = has_budget(charge.request.auth)
    guessed = 0.0
    for clip in clips:
        source = clip.upload.source
        declared = await asyncio.to_thread(declared_seconds, source) if budgeted else None
        guessed += estimated_audio_seconds(clip.upload.size, declared)
    await charge.admit(estimate(guessed))
    if budgeted and clips:
        seconds = await _or_record(charge, _decoded_seconds(clips))
        # Refused here, the request is settled as at admission: no ledger row.
        await charge.admission.cover(cost_of(charge.entry.pricing, estimate(seconds)))
    await _or_record(
        charge, archive.keep(charge.request, [(c.upload.filename, c.upload.source) for c in clips])
    )


async def _or_record(charge: Charge, step: Awaitable[T]) -> T:
    """`step`'s result; if it fails, the request's row (at no cost), which also gives its
    slot and reservation back."""
    try:
        return await step
    except Exception as exc:
        await charge.record(exc.status if isinstance(exc, OpenAIError) else 500)
        raise


async def _decoded_seconds(clips: list[Clip]) -> float:
    seconds = 0.0
    for clip in clips:
        seconds += await _decoded(clip)
    return seconds


async def _decoded(clip: Clip) -> float:
    try:
        return await asyncio.to_thread(decoded_seconds, clip.upload.source)
    except OpenAIError as exc:
        if clip.param is None:
            raise
        # An input_audio part: name the part, as hearing it would.
        raise invalid_param(
            f"Invalid value for '{clip.param}': {exc.message}", param=clip.param, code=exc.code
        ) from None
