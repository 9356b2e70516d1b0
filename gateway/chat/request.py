"""Reading a chat completion request body into a validated ChatRequest.

Validation is by hand rather than through a schema library because OpenAI's errors name
the exact place of a bad value (`messages[0].content[0].input_audio.data`), and clients
and tests rely on that `param`.
"""

import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pybase64
from django.conf import settings

from core.errors import invalid_param, json_type_name

ROLES = ("system", "developer", "user", "assistant", "tool")
# Input audio formats of the spec's table (decoded in-process by PyAV).
INPUT_AUDIO_FORMATS = ("wav", "mp3", "ogg", "flac", "m4a", "webm")
# Output audio formats OpenAI accepts for chat; streaming allows pcm16 only.
OUTPUT_AUDIO_FORMATS = ("wav", "aac", "mp3", "flac", "opus", "pcm16")
MODALITIES = ("text", "audio")
# OpenAI's integer parameters are 32-bit: a larger max_tokens is refused, not priced.
MAX_INT32 = 2**31 - 1
JSON_PARSE_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you "
    "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
)


@dataclass(frozen=True)
class AudioInput:
    """An `input_audio` content part, base64 already decoded."""

    data: bytes
    format: str
    param: str  # where it was in the request, for errors about its content


@dataclass(frozen=True)
class Message:
    """One request message: text pieces and audio parts in order, or a stored audio reply."""

    role: Literal["system", "user", "assistant"]
    parts: list[str | AudioInput]
    audio_id: str | None = None  # an assistant turn given back as `audio: {id}`
    param: str = ""


@dataclass(frozen=True)
class AudioOutput:
    voice: str
    format: str


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    modalities: list[str] = field(default_factory=lambda: ["text"])
    audio: AudioOutput | None = None
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    user: str | None = None
    # The body as parsed, for an upstream that takes the request whole (relayed as sent).
    body: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def wants_audio(self) -> bool:
        return "audio" in self.modalities

    @property
    def has_audio_input(self) -> bool:
        return bool(self.audio_inputs())

    def audio_inputs(self) -> list[AudioInput]:
        return [p for m in self.messages for p in m.parts if isinstance(p, AudioInput)]

    def audio_uploads(self) -> list[tuple[str, bytes]]:
        """The input audio as (file name, bytes), in request order."""
        return [(f"input_audio.{a.format}", a.data) for a in self.audio_inputs()]

    def token_budget(self) -> int:
        return self.max_tokens or settings.AROUTER_CHAT_MAX_TOKENS


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(raw: bytes) -> Any:
    """A request body as strict JSON (RFC 8259): no NaN or Infinity, which Python's parser
    would accept; nesting too deep for the parser is a 400 rather than a RecursionError."""
    try:
        return json.loads(raw or b"null", parse_constant=_refuse_constant)
    except ValueError:
        raise invalid_param(JSON_PARSE_ERROR, param=None) from None
    except RecursionError:
        raise invalid_param(
            "We could not parse the JSON body of your request: its arrays and objects are "
            "nested too deeply.",
            param=None,
        ) from None


def _refuse_lone_surrogates(value: str, param: str) -> None:
    # A "\\udfff" escape parses to a lone surrogate: no text a model can read (it cannot
    # even be encoded as UTF-8).
    if value.isascii():
        return
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise invalid_param(
            f"Invalid value for '{param}': the string is not valid Unicode (a lone surrogate "
            f"{value[exc.start]!r} at position {exc.start}).",
            param=param,
            code="invalid_value",
        ) from None


def _expect(value: Any, kind: type | tuple[type, ...], param: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        got = json_type_name(value)
        raise invalid_param(
            f"Invalid type for '{param}': expected {what}, but got {got} instead.",
            param=param,
            code="invalid_type",
        )
    if isinstance(value, str):
        _refuse_lone_surrogates(value, param)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _choice(value: Any, choices: tuple[str, ...], param: str) -> str:
    if value not in choices:
        listed = ", ".join(f"'{c}'" for c in choices)
        raise invalid_param(
            f"Invalid value: '{value}'. Supported values are: {listed}.",
            param=param,
            code="invalid_value",
        )
    return value


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    _expect(value, (int, float), name, "a decimal")
    if not low <= value <= high:
        raise invalid_param(
            f"Invalid '{name}': decimal above maximum value. Expected a value <= {high}, "
            f"but got {value} instead."
            if value > high
            else f"Invalid '{name}': decimal below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            param=name,
            code="decimal_above_max_value" if value > high else "decimal_below_min_value",
        )
    return float(value)


def _decode_audio(raw: Any, param: str) -> bytes:
    _expect(raw, str, param, "a string")
    try:
        data = pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_param(
            f"Invalid value for '{param}': the audio data is not valid base64.",
            param=param,
            code="invalid_value",
        ) from None
    if not data:
        raise invalid_param(
            f"Invalid value for '{param}': the audio data is empty.",
            param=param,
            code="invalid_value",
        )
    return data


def _part(raw: Any, role: str, param: str) -> str | AudioInput:
    _expect(raw, dict, param, "an object")
    kind = raw.get("type")
    if kind == "text" or (kind == "refusal" and role == "assistant"):
        key = "text" if kind == "text" else "refusal"
        return _expect(raw.get(key), str, f"{param}.{key}", "a string")
    if kind == "input_audio" and role == "user":
        audio = _expect(raw.get("input_audio"), dict, f"{param}.input_audio", "an object")
        fmt = _choice(audio.get("format"), INPUT_AUDIO_FORMATS, f"{param}.input_audio.format")
        data = _decode_audio(audio.get("data"), f"{param}.input_audio.data")
        return AudioInput(data=data, format=fmt, param=f"{param}.input_audio.data")
    allowed = {
        "user": ("text", "input_audio"),
        "assistant": ("text", "refusal"),
    }.get(role, ("text",))
    raise invalid_param(
        f"Invalid value: '{kind}'. Supported values for {role} messages are: "
        + ", ".join(f"'{a}'" for a in allowed)
        + ".",
        param=f"{param}.type",
        code="invalid_value",
    )


def _message(raw: Any, index: int) -> Message:
    param = f"messages[{index}]"
    _expect(raw, dict, param, "an object")
    role = _choice(raw.get("role"), ROLES, f"{param}.role")
    if role == "tool":
        raise invalid_param(
            "Tool messages are not supported by this gateway's chat models.",
            param=f"{param}.role",
            code="invalid_value",
        )
    content = raw.get("content")
    audio_id = None
    if role == "assistant" and raw.get("audio") is not None:
        audio = _expect(raw["audio"], dict, f"{param}.audio", "an object")
        audio_id = _expect(audio.get("id"), str, f"{param}.audio.id", "a string")
    if content is None:
        if audio_id is None and not (role == "assistant" and raw.get("tool_calls")):
            raise invalid_param(
                f"Invalid value for '{param}.content': expected a string or an array of "
                "content parts, got null.",
                param=f"{param}.content",
                code="invalid_type",
            )
        parts: list[str | AudioInput] = []
    elif isinstance(content, str):
        parts = [_expect(content, str, f"{param}.content", "a string")]
    else:
        _expect(content, list, f"{param}.content", "a string or an array of content parts")
        if not content:
            raise invalid_param(
                f"Invalid '{param}.content': empty array. Expected an array with minimum "
                "length 1, but got an empty array instead.",
                param=f"{param}.content",
                code="empty_array",
            )
        parts = [_part(part, role, f"{param}.content[{n}]") for n, part in enumerate(content)]
    spoken_role = "system" if role == "developer" else role
    return Message(role=spoken_role, parts=parts, audio_id=audio_id, param=param)


def _audio_output(body: dict) -> AudioOutput | None:
    raw = body.get("audio")
    if raw is None:
        return None
    _expect(raw, dict, "audio", "an object")
    voice = raw.get("voice")
    if isinstance(voice, dict):
        raise invalid_param(
            "Custom voice ids are not supported; use a voice name (GET /v1/audio/voices).",
            param="audio.voice",
            code="invalid_value",
        )
    _expect(voice, str, "audio.voice", "a string")
    fmt = _choice(raw.get("format"), OUTPUT_AUDIO_FORMATS, "audio.format")
    return AudioOutput(voice=voice, format=fmt)


def _max_tokens(body: dict) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        _expect(value, int, name, "an integer")
        if value < 1:
            raise invalid_param(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                f"but got {value} instead.",
                param=name,
                code="integer_below_min_value",
            )
        if value > MAX_INT32:
            raise invalid_param(
                f"Invalid '{name}': integer above maximum value. Expected a value <= "
                f"{MAX_INT32}, but got {value} instead.",
                param=name,
                code="integer_above_max_value",
            )
        return value
    return None


def _stop(body: dict) -> list[str]:
    raw = body.get("stop")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    _expect(raw, list, "stop", "a string or an array of strings")
    if len(raw) > 4:
        raise invalid_param(
            "Invalid 'stop': array too long. Expected an array with maximum length 4.",
            param="stop",
            code="array_above_max_length",
        )
    return [_expect(s, str, f"stop[{n}]", "a string") for n, s in enumerate(raw)]


def parse_chat_request(raw_body: bytes) -> ChatRequest:
    body = load_json(raw_body)
    if not isinstance(body, dict):
        raise invalid_param("The request body must be a JSON object.", param=None)
    if body.get("model") in (None, ""):
        raise invalid_param("you must provide a model parameter", param="model")
    model = _expect(body["model"], str, "model", "a string")

    raw_messages = body.get("messages")
    if raw_messages is None:
        raise invalid_param(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    _expect(raw_messages, list, "messages", "an array")
    if not raw_messages:
        raise invalid_param(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    messages = [_message(raw, n) for n, raw in enumerate(raw_messages)]

    modalities = body.get("modalities") or ["text"]
    _expect(modalities, list, "modalities", "an array")
    for n, modality in enumerate(modalities):
        _choice(modality, MODALITIES, f"modalities[{n}]")
    audio = _audio_output(body)
    if "audio" in modalities and audio is None:
        raise invalid_param(
            'Audio output requires the \'audio\' parameter: {"voice", "format"}.',
            param="audio",
            code="missing_required_parameter",
        )

    stream = body.get("stream") or False
    _expect(stream, bool, "stream", "a boolean")
    include_usage = False
    if body.get("stream_options") is not None:
        if not stream:
            raise invalid_param(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        options = _expect(body["stream_options"], dict, "stream_options", "an object")
        include_usage = bool(
            _expect(
                options.get("include_usage", False),
                bool,
                "stream_options.include_usage",
                "a boolean",
            )
        )
    if stream and audio is not None and "audio" in modalities and audio.format != "pcm16":
        raise invalid_param(
            f"Streaming audio output requires 'audio.format' to be 'pcm16', not '{audio.format}'.",
            param="audio.format",
            code="invalid_value",
        )
    n = body.get("n")
    if n not in (None, 1):
        raise invalid_param("Only n=1 is supported.", param="n", code="invalid_value")
    seed = body.get("seed")
    if seed is not None:
        _expect(seed, int, "seed", "an integer")
    user = body.get("user")
    return ChatRequest(
        model=model,
        messages=messages,
        modalities=list(dict.fromkeys(modalities)),
        audio=audio,
        stream=stream,
        include_usage=include_usage,
        max_tokens=_max_tokens(body),
        temperature=_number(body, "temperature", 0, 2, 1.0),
        top_p=_number(body, "top_p", 0, 1, 1.0),
        stop=_stop(body),
        seed=seed,
        user=user if isinstance(user, str) else None,
        body=body,
    )
