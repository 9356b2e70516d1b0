"""POST /v1/audio/speech (text to speech, streamed) and GET /v1/audio/voices.

The body is sent as it is made: the provider yields each sentence's encoded audio the
moment it exists, and this view passes it straight on, either as the raw audio body
(`stream_format=audio`, the default) or as `speech.audio.delta` server-sent events closed
by `speech.audio.done` with usage (`stream_format=sse`). The request is metered by
`gateway.lifecycle`: billed when the stream ends, however it ends.
"""

import logging
import math
from collections.abc import AsyncIterator
from typing import Any, Literal

import pybase64
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Field, Router, Schema
from pydantic import BaseModel

from core.errors import invalid_param
from gateway.audio.encode import CONTENT_TYPES
from gateway.catalog import ModelEntry, catalog
from gateway.lifecycle import MeteredCall
from gateway.pricing import audio_tokens_per_second
from gateway.providers import provider_for
from gateway.providers.base import SpeechJob, SpeechMeter, Synthesizer
from gateway.sse import sse_event
from usage.ledger import Metered

logger = logging.getLogger(__name__)

router = Router(tags=["audio"])

ENDPOINT = "/v1/audio/speech"
MAX_INPUT_CHARS = 4096
CHARS_PER_TOKEN = 4  # the usual English estimate; Piper has no tokenizer to count with


class SpeechRequest(BaseModel):
    # A plain pydantic model: ninja's Schema reads its input through a getter made for ORM
    # objects, which a JSON body has no use for and which cost more than the validation.
    model: str
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    # A name ("nova") or OpenAI's custom-voice object ({"id": "..."}), checked in the view
    # so the error names `voice` whatever shape was sent.
    voice: Any
    instructions: str | None = Field(None, max_length=MAX_INPUT_CHARS)
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"


def _voice_name(raw: Any) -> str:
    if isinstance(raw, dict) and set(raw) == {"id"}:
        raw = raw["id"]
    if not isinstance(raw, str) or not raw:
        raise invalid_param(
            "Invalid value for 'voice': expected a voice name such as 'alloy' or an object "
            "{'id': ...}.",
            param="voice",
        )
    return raw


def _synthesizer(entry: ModelEntry) -> Synthesizer:
    provider = provider_for(entry)
    if not isinstance(provider, Synthesizer):
        raise invalid_param(
            f"The model `{entry.id}` does not support speech synthesis.", param="model"
        )
    return provider


def speech_usage(entry: ModelEntry, meter: SpeechMeter) -> dict[str, int]:
    """OpenAI's speech usage object, estimated: Piper counts neither text nor audio tokens.

    input_tokens ~ characters / 4; output_tokens = seconds of audio x the model's
    `audio_tokens_per_second` option (10 by default, as the audio-chat cascade counts).
    """
    rate = audio_tokens_per_second(entry)
    input_tokens = math.ceil(meter.characters / CHARS_PER_TOKEN)
    output_tokens = math.ceil(meter.audio_seconds * rate)
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


async def _speech_body(
    audio: AsyncIterator[bytes], first: bytes, call: MeteredCall, meter: SpeechMeter, sse: bool
) -> AsyncIterator[bytes]:
    """Pass the audio on as it comes, metering what was made however the stream ends."""
    try:
        chunk: bytes | None = first
        while chunk is not None:
            if chunk and sse:
                audio_b64 = pybase64.b64encode(chunk).decode()
                yield sse_event({"type": "speech.audio.delta", "audio": audio_b64})
            elif chunk:
                yield chunk
            chunk = await anext(audio, None)
        _meter_into(call, meter)
        if sse:
            usage = speech_usage(call.entry, meter)
            usage_out: dict[str, Any] = {**usage, "cost": float(call.cost)}
            yield sse_event({"type": "speech.audio.done", "usage": usage_out})
    finally:
        # Also reached when the client disconnects: closing the provider's stream stops
        # synthesis before the next sentence.
        await audio.aclose()
        _meter_into(call, meter)


def _meter_into(call: MeteredCall, meter: SpeechMeter) -> None:
    call.metered.characters = meter.characters
    call.metered.audio_seconds_out = meter.audio_seconds


@router.post("/speech", summary="Create speech", response={200: None})
async def create_speech(request: HttpRequest, body: SpeechRequest) -> StreamingHttpResponse:
    entry = catalog().resolve(body.model, "speech")
    call = MeteredCall.for_request(request, entry, ENDPOINT)
    async with call.running():
        await call.admit(Metered(characters=len(body.input)))
        call.open_row()  # always a stream
        synthesizer = _synthesizer(entry)
        voice = _voice_name(body.voice)
        voices = synthesizer.voices()
        if voice not in voices:
            raise invalid_param(
                f"Invalid value for 'voice': '{voice}' is not a voice of {entry.id}. "
                f"Supported voices are: {', '.join(voices)}.",
                param="voice",
            )
        job = SpeechJob(
            input=body.input,
            voice=voice,
            response_format=body.response_format,
            speed=body.speed,
            instructions=body.instructions,
        )
        meter = SpeechMeter()
        audio = synthesizer.synthesize(job, meter)
        # Wait for the first sentence before answering: nothing could be sent sooner anyway,
        # and an engine that fails at once still gets a proper error response, not a torn
        # body (a failure later can only end the body early).
        try:
            first = await anext(audio, b"")
        except BaseException:
            await audio.aclose()
            raise
        sse = body.stream_format == "sse"
        return await call.streaming(
            _speech_body(audio, first, call, meter, sse),
            "text/event-stream" if sse else CONTENT_TYPES[job.response_format],
        )


class VoiceOut(Schema):
    id: str
    object: Literal["audio.voice"] = "audio.voice"
    name: str
    model: str
    voice: str
    settings: dict[str, float] | None = None


class VoiceList(Schema):
    object: Literal["list"] = "list"
    data: list[VoiceOut]


@router.get("/voices", response=VoiceList, summary="List voices")
async def list_voices(request: HttpRequest, model: str = "local/piper") -> VoiceList:
    """Every voice name a speech model accepts and the installed voice it maps to."""
    entry = catalog().resolve(model, "speech")
    synthesizer = _synthesizer(entry)
    styles = getattr(synthesizer, "styles", None)
    data = []
    for name, target in synthesizer.voices().items():
        settings = None
        if styles is not None:
            described = styles()[name].describe()
            settings = {k: v for k, v in described.items() if k != "voice"}
        data.append(VoiceOut(id=name, name=name, model=entry.id, voice=target, settings=settings))
    return VoiceList(data=data)
