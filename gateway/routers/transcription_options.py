"""The transcription form's newer fields, checked as OpenAI checks them.

- `include[]`: only `logprobs`, and only with `response_format=json` (OpenAI's rule).
- `chunking_strategy`: `"auto"` or a server_vad object. The official SDKs send the object
  as bracketed fields (`chunking_strategy[type]=server_vad`, ...); other clients send it
  as one JSON string. Both read the same; unknown keys are refused (the schema's
  `additionalProperties: false`).
- `known_speaker_names[]` / `known_speaker_references[]`: up to 4 each, as many names as
  references, each reference a base64 `data:` URL of 2 to 10 seconds of audio; only for
  `response_format=diarized_json`, the one format that labels speakers.

Diarizing more than 30 s of audio without a `chunking_strategy` is refused, in words that
begin with OpenAI's own ("chunking_strategy is required for diarization models").
"""

import binascii
import json
from typing import Any, Literal

import pybase64
from django.http import HttpRequest

from core.errors import OpenAIError, invalid_param
from gateway.audio.decode import declared_seconds, decoded_seconds
from gateway.providers.base import AudioUpload, KnownSpeaker, ServerVad
from gateway.transcripts import ResponseFormat

INCLUDABLE = ("logprobs",)
MAX_KNOWN_SPEAKERS = 4
REFERENCE_SECONDS = (2.0, 10.0)
# OpenAI cuts nothing by itself for diarization: past this, the client must say how.
UNCHUNKED_DIARIZATION_SECONDS = 30.0
VAD_INTEGERS = ("prefix_padding_ms", "silence_duration_ms")
VAD_KEYS = ("type", *VAD_INTEGERS, "threshold")

ChunkingStrategy = Literal["auto"] | ServerVad | None


def _values(request: HttpRequest, name: str) -> tuple[str, list[str]]:
    """The values of an array field and the name it came under (`name[]` or `name`)."""
    for param in (f"{name}[]", name):
        values = request.POST.getlist(param)
        if values:
            return param, values
    return f"{name}[]", []


# --- include[] ----------------------------------------------------------------------------


def include_logprobs(request: HttpRequest, response_format: ResponseFormat) -> bool:
    param, values = _values(request, "include")
    values = [value.strip() for value in values if value.strip()]
    for value in values:
        if value not in INCLUDABLE:
            raise invalid_param(
                f"Invalid value for '{param}': {value!r}. Supported values are: 'logprobs'.",
                param=param,
                code="invalid_value",
            )
    if values and response_format != "json":
        raise invalid_param(
            f"'{param}' logprobs is only supported when response_format is 'json'.",
            param=param,
            code="invalid_value",
        )
    return bool(values)


# --- chunking_strategy --------------------------------------------------------------------


def chunking_strategy(request: HttpRequest) -> ChunkingStrategy:
    bracketed = {
        key.removeprefix("chunking_strategy[").removesuffix("]"): value
        for key, value in request.POST.items()
        if key.startswith("chunking_strategy[") and key.endswith("]")
    }
    if bracketed:
        return _server_vad(bracketed, from_text=True)
    raw = (request.POST.get("chunking_strategy") or "").strip()
    if not raw:
        return None
    if raw == "auto":
        return "auto"
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if value == "auto":
        return "auto"
    if not isinstance(value, dict):
        raise invalid_param(
            "Invalid value for 'chunking_strategy': expected 'auto' or a server_vad object "
            '({"type": "server_vad", ...}), got ' + repr(raw) + ".",
            param="chunking_strategy",
            code="invalid_value",
        )
    return _server_vad(value, from_text=False)


def _server_vad(fields: dict[str, Any], from_text: bool) -> ServerVad:
    """A server_vad object; `from_text`: every value arrived as a form string."""
    for key in fields:
        if key not in VAD_KEYS:
            raise invalid_param(
                f"Unknown parameter: 'chunking_strategy.{key}'.",
                param=f"chunking_strategy.{key}",
                code="unknown_parameter",
            )
    kind = fields.get("type")
    if kind != "server_vad":
        raise invalid_param(
            f"Invalid value for 'chunking_strategy.type': expected 'server_vad', got {kind!r}.",
            param="chunking_strategy.type",
            code="invalid_value" if kind is not None else "missing_required_parameter",
        )
    settings: dict[str, Any] = {}
    for key in VAD_INTEGERS:
        if key in fields:
            settings[key] = _vad_integer(key, fields[key], from_text)
    if "threshold" in fields:
        settings["threshold"] = _vad_threshold(fields["threshold"], from_text)
    return ServerVad(**settings)


def _vad_integer(key: str, value: Any, from_text: bool) -> int:
    if from_text and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_param(
            f"Invalid value for 'chunking_strategy.{key}': expected a non-negative integer "
            f"(milliseconds), got {value!r}.",
            param=f"chunking_strategy.{key}",
            code="invalid_value",
        )
    return value


def _vad_threshold(value: Any, from_text: bool) -> float:
    number: float | None = None
    if from_text and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is None or not 0.0 <= number <= 1.0:  # also refuses nan
        raise invalid_param(
            "Invalid value for 'chunking_strategy.threshold': expected a number between 0 "
            f"and 1, got {value!r}.",
            param="chunking_strategy.threshold",
            code="invalid_value",
        )
    return number


def require_chunking_for_long_diarization(upload: AudioUpload) -> None:
    """OpenAI's refusal of diarized_json over 30 s of audio without a chunking_strategy.

    The duration is the container's claim, else the decoded length; a file that cannot be
    read passes here and is refused by the engine like any other (and recorded so).
    """
    try:
        seconds = declared_seconds(upload.source) or decoded_seconds(upload.source)
    except OpenAIError:
        return
    if seconds > UNCHUNKED_DIARIZATION_SECONDS:
        raise invalid_param(
            "chunking_strategy is required for diarization models when the input audio is "
            f"longer than {UNCHUNKED_DIARIZATION_SECONDS:g} seconds (this audio is "
            f"{seconds:.1f} s): send chunking_strategy=auto or a server_vad object.",
            param="chunking_strategy",
            code="missing_required_parameter",
        )


# --- known speakers -----------------------------------------------------------------------


def known_speakers(
    request: HttpRequest, response_format: ResponseFormat
) -> tuple[KnownSpeaker, ...]:
    names_param, names = _values(request, "known_speaker_names")
    references_param, references = _values(request, "known_speaker_references")
    if not names and not references:
        return ()
    if response_format != "diarized_json":
        param = names_param if names else references_param
        raise invalid_param(
            f"'{param}' is only supported when response_format is 'diarized_json'.",
            param=param,
            code="invalid_value",
        )
    for param, values in ((names_param, names), (references_param, references)):
        if len(values) > MAX_KNOWN_SPEAKERS:
            raise invalid_param(
                f"Invalid '{param}': array too long. Expected an array with maximum length "
                f"{MAX_KNOWN_SPEAKERS}, but got an array with length {len(values)} instead.",
                param=param,
                code="array_above_max_length",
            )
    if len(names) != len(references):
        raise invalid_param(
            f"'{names_param}' and '{references_param}' must have the same length: each "
            f"name belongs to the reference at the same position (got {len(names)} names "
            f"and {len(references)} references).",
            param=references_param,
            code="invalid_value",
        )
    speakers = []
    for index, (name, reference) in enumerate(zip(names, references, strict=True)):
        if not name.strip():
            raise invalid_param(
                f"Invalid value for '{names_param}': entry {index} is empty.",
                param=names_param,
                code="invalid_value",
            )
        _check_reference(reference, f"{references_param.removesuffix('[]')}[{index}]")
        speakers.append(KnownSpeaker(name=name.strip(), reference=reference.strip()))
    return tuple(speakers)


def _check_reference(reference: str, param: str) -> None:
    """A base64 data: URL of audio between 2 and 10 seconds long."""
    audio = _data_url_bytes(reference.strip(), param)
    try:
        seconds = decoded_seconds(audio)
    except OpenAIError as exc:
        raise invalid_param(
            f"Invalid value for '{param}': {exc.message}", param=param, code="invalid_value"
        ) from None
    shortest, longest = REFERENCE_SECONDS
    if not shortest <= seconds <= longest:
        raise invalid_param(
            f"Invalid value for '{param}': the sample is {seconds:.1f} s long; each known "
            f"speaker reference must be between {shortest:g} and {longest:g} seconds.",
            param=param,
            code="invalid_value",
        )


def _data_url_bytes(reference: str, param: str) -> bytes:
    head, comma, payload = reference.partition(",")
    if not (head.lower().startswith("data:") and comma and head.lower().endswith(";base64")):
        raise invalid_param(
            f"Invalid value for '{param}': expected a base64 data URL of audio "
            "(data:audio/wav;base64,...).",
            param=param,
            code="invalid_value",
        )
    try:
        return pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_param(
            f"Invalid value for '{param}': the data URL's base64 payload is malformed.",
            param=param,
            code="invalid_value",
        ) from None
