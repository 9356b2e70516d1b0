"""Admitting a request that carries audio: reserve what the audio will cost, then keep it.

Audio is billed by its decoded duration, which its size does not tell (300 s of silence
is a 60 KB FLAC). So a request first reserves the duration its containers declare (read
from their headers, cheap) and, when a budget applies, the duration they decode to,
before any engine runs: a header that claims less than the file holds changes nothing.
Only then, admitted, are the uploads archived (AROUTER_KEEP_UPLOADS_DIR): a refused
request leaves nothing behind.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import OpenAIError, invalid_param
from gateway.audio import archive
from gateway.audio.decode import declared_seconds, decoded_seconds
from gateway.lifecycle import MeteredCall
from gateway.providers.base import AudioUpload
from quotas.admission import estimated_audio_seconds, has_budget
from usage.ledger import Metered


@dataclass(frozen=True)
class Clip:
    """One uploaded audio file of a request."""

    upload: AudioUpload
    # Where it sat in a JSON body, for errors about its content; None: the `file` field.
    param: str | None = None


async def admit_uploads(
    call: MeteredCall, clips: list[Clip], estimate: Callable[[float], Metered]
) -> None:
    """Admit `call` with `estimate(seconds of audio)`, then archive its clips.

    A key without a budget is admitted on a size guess (the reservation is not used) and
    pays for no probe or decode here. With a budget, a clip that cannot be decoded is the
    400 the engine would answer, recorded at no cost.
    """
    budgeted = has_budget(call.api_key)
    guessed = 0.0
    for clip in clips:
        source = clip.upload.source
        declared = await asyncio.to_thread(declared_seconds, source) if budgeted else None
        guessed += estimated_audio_seconds(clip.upload.size, declared)
    await call.admit(estimate(guessed))
    if budgeted and clips:
        # Refused here, the request is settled as at admission: no ledger row.
        await call.cover(estimate(await _decoded_seconds(clips)))
    uploads = [(clip.upload.filename, clip.upload.source) for clip in clips]
    await archive.keep(call.api_key.team_id, call.request_id, uploads)


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
