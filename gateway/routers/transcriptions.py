"""POST /v1/audio/transcriptions and POST /v1/audio/translations (speech to text).

Both take OpenAI's multipart form. The form is validated here by hand rather than through
ninja's Form/File parameters so every refusal names the field exactly as the client sent
it (`timestamp_granularities[]` arrives with its brackets) and an oversized file is a 413.

`stream=true` (transcriptions only, as in OpenAI) answers `text/event-stream`: one
`transcript.text.delta` per segment the moment Whisper decodes it, then
`transcript.text.done` with the whole text and token usage (the only usage the spec gives
that event; the json answer keeps the duration usage). With `response_format=diarized_json`
each segment's delta names its `segment_id` and is followed by its
`transcript.text.segment` event (speaker, start, end); with `include[]=logprobs` deltas and
the done event carry their tokens' `logprobs`. The ledger row is written once per request
however it ends: answered, refused, failed, or abandoned mid-stream.

What a model cannot produce is refused by its provider with OpenAI's 400 (local Whisper
hears no speakers: diarized_json is `unsupported_value` there), never answered in another
shape; the newer fields are checked in `transcription_options`.
"""

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from ninja import Router

from core.errors import OpenAIError, invalid_param, request_too_large
from gateway.audio.reservation import Clip, admit_uploads
from gateway.catalog import ModelEntry, catalog
from gateway.lifecycle import MeteredCall
from gateway.providers import provider_for
from gateway.providers.base import (
    AudioUpload,
    KnownSpeaker,
    Segment,
    Transcriber,
    Transcript,
    TranscriptionJob,
)
from gateway.routers import transcription_options as options
from gateway.sse import sse_event
from gateway.transcripts import (
    RESPONSE_FORMATS,
    TRANSLATION_FORMATS,
    ResponseFormat,
    billed_seconds,
    duration_usage,
    logprobs_json,
    render,
    segment_event,
    segment_id,
    token_usage,
)
from usage.ledger import Metered

logger = logging.getLogger(__name__)

router = Router(tags=["audio"])

TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
GRANULARITIES = ("word", "segment")
_TRUE, _FALSE = ("true", "1"), ("false", "0", "")


@dataclass(frozen=True)
class SpeechToTextForm:
    """A validated transcription or translation request."""

    model: str
    upload: AudioUpload
    response_format: ResponseFormat
    temperature: float
    prompt: str | None
    language: str | None
    granularities: tuple[str, ...]
    stream: bool
    include_logprobs: bool = False
    chunking_strategy: options.ChunkingStrategy = None
    known_speakers: tuple[KnownSpeaker, ...] = ()

    @property
    def diarized(self) -> bool:
        return self.response_format == "diarized_json"


def _missing(param: str) -> OpenAIError:
    return invalid_param(f"Missing required parameter: '{param}'.", param=param)


def _text_field(request: HttpRequest, name: str) -> str | None:
    value = request.POST.get(name)
    return value.strip() if value is not None and value.strip() else None


def _read_upload(request: HttpRequest) -> AudioUpload:
    uploaded: UploadedFile | None = request.FILES.get("file")
    if uploaded is None:
        if "file" in request.POST:
            raise invalid_param(
                "Invalid value for 'file': expected a file upload (multipart/form-data), "
                "not a text field.",
                param="file",
            )
        raise _missing("file")
    limit = settings.AROUTER_MAX_UPLOAD_BYTES
    if uploaded.size is not None and uploaded.size > limit:
        raise request_too_large(limit, uploaded.size, param="file")
    # Past FILE_UPLOAD_MAX_MEMORY_SIZE Django spilled the upload to a temporary file (gone
    # when the request ends): keep it there rather than read it into memory.
    spilled = getattr(uploaded, "temporary_file_path", None)
    return AudioUpload(
        content=b"" if spilled else uploaded.read(),
        filename=uploaded.name or "audio",
        content_type=uploaded.content_type or "",
        path=spilled() if spilled else None,
    )


def _temperature(request: HttpRequest) -> float:
    raw = _text_field(request, "temperature")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise invalid_param(
            f"Invalid value for 'temperature': expected a number between 0 and 1, got {raw!r}.",
            param="temperature",
            code="invalid_value",
        )
    return value


def _response_format(
    request: HttpRequest, task: Literal["transcribe", "translate"]
) -> ResponseFormat:
    value = _text_field(request, "response_format") or "json"
    supported = RESPONSE_FORMATS if task == "transcribe" else TRANSLATION_FORMATS
    if value not in supported:
        raise invalid_param(
            f"Invalid value for 'response_format': {value!r}. Supported values are: "
            f"{', '.join(supported)}.",
            param="response_format",
            code="invalid_value",
        )
    return value  # type: ignore[return-value]


def _granularities(request: HttpRequest, response_format: ResponseFormat) -> tuple[str, ...]:
    for param in ("timestamp_granularities[]", "timestamp_granularities"):
        values = [v.strip() for v in request.POST.getlist(param) if v.strip()]
        if values:
            break
    else:
        return ()
    for value in values:
        if value not in GRANULARITIES:
            raise invalid_param(
                f"Invalid value for '{param}': {value!r}. Supported values are: "
                "'word' and 'segment'.",
                param=param,
                code="invalid_value",
            )
    if response_format != "verbose_json":
        raise invalid_param(
            f"'{param}' is only supported when response_format is 'verbose_json'.",
            param=param,
            code="invalid_value",
        )
    return tuple(dict.fromkeys(values))


def _stream(request: HttpRequest) -> bool:
    raw = (request.POST.get("stream") or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise invalid_param(
        f"Invalid value for 'stream': expected a boolean, got {raw!r}.", param="stream"
    )


def _measure_chunked_body(request: HttpRequest) -> None:
    """Give a chunked upload the Content-Length Django's multipart parser needs.

    The JS SDK streams multipart bodies with `Transfer-Encoding: chunked` and no length;
    Django would then parse them as empty. The ASGI handler has the whole body already, so
    read it and record its size (past the upload limit it is a 413 without parsing).
    """
    if int(request.META.get("CONTENT_LENGTH") or 0) > 0:
        return
    size = len(request.body)
    request.META["CONTENT_LENGTH"] = str(size)
    # The file plus the multipart framing and the other fields: a generous allowance.
    if size > settings.AROUTER_MAX_UPLOAD_BYTES + 1024 * 1024:
        raise request_too_large(settings.AROUTER_MAX_UPLOAD_BYTES, size, param="file")


def parse_form(request: HttpRequest, task: Literal["transcribe", "translate"]) -> SpeechToTextForm:
    """The request's form, checked in the order a client most needs to hear about."""
    content_type = request.content_type or ""
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise invalid_param(
            "This endpoint expects multipart/form-data with a 'file' part "
            f"(got {content_type or 'no content type'}).",
            param="file",
        )
    _measure_chunked_body(request)
    model = _text_field(request, "model")
    upload = _read_upload(request)
    if model is None:
        raise _missing("model")
    response_format = _response_format(request, task)
    if task == "translate":
        # Translations have no `language` (the output is English), never stream, and take
        # none of the transcription-only fields (OpenAI's CreateTranslationRequest).
        return SpeechToTextForm(
            model=model,
            upload=upload,
            response_format=response_format,
            temperature=_temperature(request),
            prompt=request.POST.get("prompt") or None,
            language=None,
            granularities=(),
            stream=False,
        )
    form = SpeechToTextForm(
        model=model,
        upload=upload,
        response_format=response_format,
        temperature=_temperature(request),
        prompt=request.POST.get("prompt") or None,
        language=_text_field(request, "language"),
        granularities=_granularities(request, response_format),
        stream=_stream(request),
        include_logprobs=options.include_logprobs(request, response_format),
        chunking_strategy=options.chunking_strategy(request),
        known_speakers=options.known_speakers(request, response_format),
    )
    if form.diarized and form.chunking_strategy is None:
        options.require_chunking_for_long_diarization(upload)
    return form


def _transcriber(entry: ModelEntry) -> Transcriber:
    provider = provider_for(entry)
    if not isinstance(provider, Transcriber):
        raise invalid_param(
            f"The model `{entry.id}` does not support transcription.", param="model"
        )
    return provider


def _meter(call: MeteredCall, transcript: Transcript) -> dict[str, Any]:
    seconds = billed_seconds(transcript)
    call.metered.audio_seconds_in = float(seconds)
    return duration_usage(seconds, call.cost)


def _stream_error(error: OpenAIError) -> bytes:
    """A failure after the headers went: OpenAI's stream error object, then the end."""
    return sse_event({"type": "error", **error.body()})


def _delta_text(segment: Segment, sent_so_far: str, diarized: bool) -> str:
    """What a segment adds to the text: Whisper's segments begin with their own space;
    a diarizing provider's are bare utterances, joined by one."""
    if not sent_so_far:
        return segment.text.lstrip()
    if diarized and not sent_so_far[-1].isspace() and not segment.text[:1].isspace():
        return " " + segment.text
    return segment.text


def _delta_event(segment: Segment, delta: str, form: SpeechToTextForm) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta}
    if form.include_logprobs:
        event["logprobs"] = logprobs_json(segment.logprobs or [])
    if form.diarized:
        event["segment_id"] = segment_id(segment)
    return event


def _done_event(transcript: Transcript, form: SpeechToTextForm, call: MeteredCall) -> dict:
    _meter(call, transcript)  # billed by the minute, reported as the spec's tokens
    event: dict[str, Any] = {"type": "transcript.text.done", "text": transcript.text}
    if form.include_logprobs:
        event["logprobs"] = logprobs_json(transcript.logprobs or [])
    event["usage"] = token_usage(transcript, call.entry, call.cost)
    return event


async def _events(
    items: AsyncIterator[Segment | Transcript],
    first: Segment | Transcript,
    call: MeteredCall,
    form: SpeechToTextForm,
) -> AsyncIterator[bytes]:
    """SSE for a transcription stream, metered however it ends.

    A client that leaves before `transcript.text.done` is billed for the audio decoded up
    to then: the end of the last segment it was sent, rounded up to the second.
    """
    item: Segment | Transcript | None = first
    sent = ""
    heard_until = 0.0
    try:
        while item is not None:
            if isinstance(item, Transcript):
                yield sse_event(_done_event(item, form, call))
            else:
                heard_until = max(heard_until, item.end)
                delta = _delta_text(item, sent, form.diarized)
                if delta:
                    sent += delta
                    yield sse_event(_delta_event(item, delta, form))
                if form.diarized:
                    yield sse_event(segment_event(item))
            item = await anext(items, None)
    finally:
        # Also reached when the client disconnects: closing the provider's stream stops
        # decoding after the current segment.
        await items.aclose()
        if not call.metered.audio_seconds_in:
            call.metered.audio_seconds_in = float(math.ceil(heard_until))


# A body this small parses faster than a worker thread can be handed it.
INLINE_FORM_BYTES = 1 << 20


async def _read_form(
    request: HttpRequest, task: Literal["transcribe", "translate"]
) -> SpeechToTextForm:
    """The parsed form: a large body (a spooled file of up to 25 MB) off the event loop."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) <= INLINE_FORM_BYTES:
        return parse_form(request, task)
    return await asyncio.to_thread(parse_form, request, task)


async def _speech_to_text(
    request: HttpRequest, task: Literal["transcribe", "translate"], endpoint: str
) -> HttpResponse:
    form = await _read_form(request, task)
    entry = catalog().resolve(form.model, "transcription")
    call = MeteredCall.for_request(request, entry, endpoint)
    async with call.running():
        # Reserved at the audio's duration (not its size), and kept only once admitted.
        await admit_uploads(
            call, [Clip(form.upload)], lambda seconds: Metered(audio_seconds_in=math.ceil(seconds))
        )
        transcriber = _transcriber(entry)
        job = TranscriptionJob(
            upload=form.upload,
            task=task,
            language=form.language,
            prompt=form.prompt,
            temperature=form.temperature,
            word_timestamps="word" in form.granularities,
            diarize=form.diarized,
            known_speakers=form.known_speakers,
            include_logprobs=form.include_logprobs,
            chunking_strategy=form.chunking_strategy,
        )
        if form.stream:
            call.open_row()
            items = transcriber.stream_transcription(job)
            # Wait for the first segment before answering, so a bad file or a failing
            # engine is still a proper error response rather than a torn stream.
            try:
                first = await anext(items)
            except BaseException:
                await items.aclose()
                raise
            return await call.streaming(
                _events(items, first, call, form), "text/event-stream", on_error=_stream_error
            )
        transcript = await transcriber.transcribe(job)
        usage = _meter(call, transcript)
    return call.respond(render(transcript, form.response_format, task, usage))


_FORM_SCHEMA = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "model"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string", "example": "openai/whisper-large-v3"},
                        "language": {"type": "string"},
                        "prompt": {"type": "string"},
                        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS)},
                        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(GRANULARITIES)},
                        },
                        "stream": {"type": "boolean"},
                        "include[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(options.INCLUDABLE)},
                        },
                        "chunking_strategy": {
                            "description": '"auto", or a server_vad object as JSON',
                            "type": "string",
                            "example": "auto",
                        },
                        "known_speaker_names[]": {
                            "type": "array",
                            "maxItems": options.MAX_KNOWN_SPEAKERS,
                            "items": {"type": "string"},
                        },
                        "known_speaker_references[]": {
                            "type": "array",
                            "maxItems": options.MAX_KNOWN_SPEAKERS,
                            "items": {"type": "string", "description": "a data: URL of audio"},
                        },
                    },
                }
            }
        },
        "required": True,
    }
}
_TRANSLATION_SCHEMA = json.loads(json.dumps(_FORM_SCHEMA))
_TRANSLATION_FIELDS = _TRANSLATION_SCHEMA["requestBody"]["content"]["multipart/form-data"]["schema"]
for _name in (
    "language",
    "timestamp_granularities[]",
    "stream",
    "include[]",
    "chunking_strategy",
    "known_speaker_names[]",
    "known_speaker_references[]",
):
    del _TRANSLATION_FIELDS["properties"][_name]
_TRANSLATION_FIELDS["properties"]["response_format"]["enum"] = list(TRANSLATION_FORMATS)


@router.post(
    "/transcriptions",
    summary="Create transcription",
    response={200: None},
    openapi_extra=_FORM_SCHEMA,
)
async def create_transcription(request: HttpRequest) -> HttpResponse:
    return await _speech_to_text(request, "transcribe", TRANSCRIPTIONS)


@router.post(
    "/translations",
    summary="Create translation",
    response={200: None},
    openapi_extra=_TRANSLATION_SCHEMA,
)
async def create_translation(request: HttpRequest) -> HttpResponse:
    return await _speech_to_text(request, "translate", TRANSLATIONS)
