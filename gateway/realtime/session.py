"""`session.update` for the realtime socket: every field type-checked, applied all or nothing.

Both shapes clients send are read: OpenAI's GA session (`audio.input`, `audio.output`,
`output_modalities`, `max_output_tokens`) and the beta one (`voice`,
`input_audio_format`, `modalities`, `max_response_output_tokens`, `temperature`). A wrong
type, a value we cannot honour, or an unknown field is a `RealtimeError` naming its
`param`; the session is then left exactly as it was.
"""

import copy
from collections.abc import Collection
from dataclasses import dataclass

from core.errors import OpenAIError
from gateway.catalog import catalog
from gateway.realtime.protocol import PCM_FORMAT, RealtimeError, invalid_type, new_id
from gateway.realtime.vad import TurnDetection

DEFAULT_VOICE = "alloy"
DEFAULT_TRANSCRIPTION_MODEL = "local/whisper-base"
# Each format's spellings: GA objects, and the beta names.
AUDIO_FORMATS = {
    "pcm16": ("pcm16", {"type": "audio/pcm"}, PCM_FORMAT),
    "g711_ulaw": ("g711_ulaw", {"type": "audio/pcmu"}),
    "g711_alaw": ("g711_alaw", {"type": "audio/pcma"}),
}
FORMAT_OBJECTS = {
    "pcm16": PCM_FORMAT,
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
MODALITIES = (["audio"], ["text"], ["text", "audio"], ["audio", "text"])

# Fields about OpenAI's platform (traces, logprobs, context truncation): type-checked, and
# without effect here. Anything else unknown is refused, as OpenAI does.
_PLATFORM_ONLY = {
    "tracing": ((str, dict, type(None)), "a string or an object"),
    "include": ((list, type(None)), "an array"),
    "truncation": ((str, dict), "a string or an object"),
    "tool_choice": ((str, dict), "a string or an object"),
}


def _object(value, param: str) -> dict:
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    return value


def _optional_object(value, param: str) -> dict:
    """An object, with null (or absence) read as an empty one."""
    return {} if value is None else _object(value, param)


def _string(value, param: str) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    return value


def _number(value, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_type(param, "a number", value)
    if not low <= value <= high:
        raise RealtimeError(
            f"Invalid '{param}': expected a number from {low} to {high}, got {value}.",
            "invalid_value",
            param,
        )
    return float(value)


def _only_known(fields: dict, known: Collection[str], prefix: str) -> None:
    for name in fields:
        if name not in known:
            raise RealtimeError(
                f"Unknown parameter: '{prefix}.{name}'.", "unknown_parameter", f"{prefix}.{name}"
            )


def _first(fields: dict, *names: str) -> tuple[object, str | None]:
    """The value of the first of `names` present (GA name first), and which one it was."""
    for name in names:
        if name in fields:
            return fields[name], name
    return None, None


def output_token_limit(value, param: str) -> int | str:
    """OpenAI's max_output_tokens: an integer from 1 to 4096, or "inf"."""
    if value == "inf":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
        raise RealtimeError(
            "`max_output_tokens` must be an integer from 1 to 4096, or 'inf'.",
            "invalid_value",
            param,
        )
    return value


def audio_format(value, param: str) -> str:
    """The format a session names, as "pcm16", "g711_ulaw" or "g711_alaw" (GA objects and
    beta strings both read)."""
    if not isinstance(value, str | dict):
        raise invalid_type(param, "an object", value)
    for name, spellings in AUDIO_FORMATS.items():
        if value in spellings:
            return name
    raise RealtimeError(
        "Supported formats are {'type': 'audio/pcm', 'rate': 24000}, {'type': 'audio/pcmu'} "
        "and {'type': 'audio/pcma'} (beta: 'pcm16', 'g711_ulaw', 'g711_alaw').",
        "invalid_value",
        param,
    )


def _voice(value, param: str, voices: Collection[str]) -> str:
    voice = _string(value, param)
    if voice not in voices:
        raise RealtimeError(
            f"Invalid value: '{voice}'. Supported voices are: "
            + ", ".join(f"'{v}'" for v in voices)
            + ".",
            "invalid_value",
            param,
        )
    return voice


def _turn_detection(value, param: str) -> dict | None:
    return None if value is None else TurnDetection.from_event(value, param).as_dict()


def _transcription(value, param: str) -> dict | None:
    """Input transcription options (model, language, prompt), checked. Transcription runs
    whatever they say (the cascade reads the transcript); a named model must be one of
    the catalog's transcription models."""
    if value is None:
        return None
    options = _object(value, param)
    _only_known(options, ("model", "language", "prompt"), param)
    for name, option in options.items():
        if option is not None:
            _string(option, f"{param}.{name}")
    if (model := options.get("model")) is not None:
        try:
            catalog().resolve(model, "transcription")
        except OpenAIError as exc:
            raise RealtimeError(exc.message, "invalid_value", f"{param}.model") from None
    return {
        "model": options.get("model"),
        "language": options.get("language"),
        "prompt": options.get("prompt") or "",
    }


def _unsupported(value, param: str, what: str) -> None:
    if value is not None:
        raise RealtimeError(f"{what} is not supported here.", "invalid_value", param)


def _speed(value, param: str) -> None:
    # The cascade speaks at the voice's own pace; a faster or slower reply is not made.
    if value is not None and _number(value, param, 0.25, 1.5) != 1.0:
        raise RealtimeError("Only speed 1.0 is supported here.", "invalid_value", param)


def _same_session(update: dict, fields: dict, models: Collection[str]) -> None:
    """A session keeps its type and model: another model is another session."""
    if (kind := update.get("type")) is not None and _string(kind, "session.type") != fields["type"]:
        raise RealtimeError(
            f"Invalid value: '{kind}'. This session's type is '{fields['type']}'; open a "
            f"{kind} session to use it (`?intent=transcription` for transcription).",
            "invalid_value",
            "session.type",
        )
    if (asked := update.get("model")) is not None and _string(asked, "session.model") not in models:
        raise RealtimeError(
            f"The session's model is `{fields.get('model')}`; open a new session to use `{asked}`.",
            "invalid_value",
            "session.model",
        )


def _reply_fields(update: dict, fields: dict) -> None:
    """Apply to `fields` what shapes the replies: instructions, modalities, token limit."""
    if (instructions := update.get("instructions")) is not None:
        fields["instructions"] = _string(instructions, "session.instructions")
    modalities, name = _first(update, "output_modalities", "modalities")
    if modalities is not None:
        if not isinstance(modalities, list) or modalities not in MODALITIES:
            raise RealtimeError(
                "`output_modalities` must be ['audio'] or ['text'].",
                "invalid_value",
                f"session.{name}",
            )
        fields["output_modalities"] = ["text"] if modalities == ["text"] else ["audio"]
    limit, name = _first(update, "max_output_tokens", "max_response_output_tokens")
    if name is not None:
        fields["max_output_tokens"] = output_token_limit(limit, f"session.{name}")


def _without_effect(update: dict) -> None:
    """Check the fields we accept but do not act on; refuse tools and stored prompts."""
    for field_name, (types, expected) in _PLATFORM_ONLY.items():
        if field_name in update and not isinstance(update[field_name], types):
            raise invalid_type(f"session.{field_name}", expected, update[field_name])
    if (tools := update.get("tools")) is not None:
        if not isinstance(tools, list):
            raise invalid_type("session.tools", "an array", tools)
        if tools:
            raise RealtimeError("Tools are not supported here.", "invalid_value", "session.tools")
    _unsupported(update.get("prompt"), "session.prompt", "A stored prompt")


def _apply_input(fields: dict, changes: dict) -> None:
    """Input changes applied; OpenAI's shape leaves out input transcription when off."""
    audio_input = fields["audio"]["input"]
    audio_input.update(changes)
    if audio_input.get("transcription", ...) is None:
        del audio_input["transcription"]


@dataclass
class Session:
    """The session a socket runs: what `session.created` / `session.updated` show.

    A `realtime` session converses; a `transcription` session only turns speech into text
    (OpenAI's transcription sessions, `?intent=transcription`).
    """

    fields: dict
    temperature: float = 0.8  # OpenAI's realtime default

    @classmethod
    def opened(cls, model: str) -> "Session":
        """A new conversation: server VAD (OpenAI's default), pcm16 in, spoken pcm16 out."""
        return cls(
            {
                "type": "realtime",
                "object": "realtime.session",
                "id": new_id("sess"),
                "model": model,
                "output_modalities": ["audio"],
                "instructions": "",
                "max_output_tokens": "inf",
                "audio": {
                    "input": {
                        "format": PCM_FORMAT,
                        "turn_detection": TurnDetection().as_dict(),
                    },
                    "output": {"format": PCM_FORMAT, "voice": DEFAULT_VOICE, "speed": 1.0},
                },
            }
        )

    @classmethod
    def transcribing(cls, model: str | None = None) -> "Session":
        """A new transcription session: server VAD turns, each transcribed by `model`."""
        return cls(
            {
                "type": "transcription",
                "object": "realtime.transcription_session",
                "id": new_id("sess"),
                "audio": {
                    "input": {
                        "format": PCM_FORMAT,
                        "transcription": {
                            "model": model or DEFAULT_TRANSCRIPTION_MODEL,
                            "language": None,
                            "prompt": "",
                        },
                        "turn_detection": TurnDetection().as_dict(),
                    },
                },
            }
        )

    @property
    def transcribes_only(self) -> bool:
        return self.fields["type"] == "transcription"

    @property
    def input(self) -> dict:
        return self.fields["audio"]["input"]

    @property
    def transcription_model(self) -> str:
        """The model a transcription session's turns are transcribed (and billed) by."""
        return (self.input.get("transcription") or {}).get("model") or DEFAULT_TRANSCRIPTION_MODEL

    @property
    def input_format(self) -> str:
        return audio_format(self.input["format"], "session.audio.input.format")

    @property
    def output_format(self) -> str:
        return audio_format(self.fields["audio"]["output"]["format"], "session.audio.output.format")

    @property
    def turn_detection(self) -> TurnDetection | None:
        raw = self.input["turn_detection"]
        return None if raw is None else TurnDetection.from_event(raw, "turn_detection")

    def response_limit(self, options) -> int | str:
        """The max_output_tokens of a response.create: its own, or the session's."""
        options = options or {}
        if not isinstance(options, dict):
            raise RealtimeError("`response` must be an object.", "invalid_type", "response")
        if "max_output_tokens" in options:
            return output_token_limit(options["max_output_tokens"], "response.max_output_tokens")
        return self.fields["max_output_tokens"]

    def updated(self, update, models: Collection[str], voices: Collection[str]) -> "Session":
        """A new Session with `update` applied, or a RealtimeError (this one unchanged)."""
        update = _object(update, "session")
        fields = copy.deepcopy(self.fields)
        _same_session(update, fields, models)
        if self.transcribes_only:
            _only_known(update, _TRANSCRIPTION_TOP_LEVEL, "session")
            _without_effect(update)
            audio = _optional_object(update.get("audio"), "session.audio")
            _only_known(audio, ("input",), "session.audio")
            _apply_input(fields, self._input(audio, update))
            return Session(fields, self.temperature)
        _only_known(update, _TOP_LEVEL, "session")
        _reply_fields(update, fields)
        temperature = self.temperature
        if (value := update.get("temperature")) is not None:
            temperature = _number(value, "session.temperature", 0, 2)
        _without_effect(update)
        audio = _optional_object(update.get("audio"), "session.audio")
        _only_known(audio, ("input", "output"), "session.audio")
        _apply_input(fields, self._input(audio, update))
        fields["audio"]["output"].update(self._output(audio, update, voices))
        return Session(fields, temperature)

    @staticmethod
    def _input(audio: dict, update: dict) -> dict:
        """The input fields to change (format, turn detection, transcription)."""
        raw = _optional_object(audio.get("input"), "session.audio.input")
        _only_known(
            raw,
            ("format", "turn_detection", "transcription", "noise_reduction"),
            "session.audio.input",
        )
        changes: dict = {}
        for value, param in (
            (raw.get("format"), "session.audio.input.format"),
            (update.get("input_audio_format"), "session.input_audio_format"),
        ):
            if value is not None:
                changes["format"] = FORMAT_OBJECTS[audio_format(value, param)]
        for source, name, param in (
            (raw, "turn_detection", "session.audio.input.turn_detection"),
            (update, "turn_detection", "session.turn_detection"),
        ):
            if name in source:
                changes["turn_detection"] = _turn_detection(source[name], param)
        for source, name, param in (
            (raw, "transcription", "session.audio.input.transcription"),
            (update, "input_audio_transcription", "session.input_audio_transcription"),
        ):
            if name in source:
                changes["transcription"] = _transcription(source[name], param)
        noise = raw.get("noise_reduction")
        if noise is not None:
            _object(noise, "session.audio.input.noise_reduction")
        _unsupported(noise, "session.audio.input.noise_reduction", "Noise reduction")
        return changes

    @staticmethod
    def _output(audio: dict, update: dict, voices: Collection[str]) -> dict:
        """The output fields to change."""
        raw = _optional_object(audio.get("output"), "session.audio.output")
        _only_known(raw, ("format", "voice", "speed"), "session.audio.output")
        changes = {}
        for value, param in (
            (update.get("voice"), "session.voice"),
            (raw.get("voice"), "session.audio.output.voice"),
        ):
            if value is not None:
                changes["voice"] = _voice(value, param, voices)
        for value, param in (
            (raw.get("format"), "session.audio.output.format"),
            (update.get("output_audio_format"), "session.output_audio_format"),
        ):
            if value is not None:
                changes["format"] = FORMAT_OBJECTS[audio_format(value, param)]
        _speed(raw.get("speed"), "session.audio.output.speed")
        _speed(update.get("speed"), "session.speed")
        return changes


_TOP_LEVEL = (
    "type",
    "model",
    "instructions",
    "output_modalities",
    "modalities",
    "max_output_tokens",
    "max_response_output_tokens",
    "temperature",
    "audio",
    "voice",
    "speed",
    "input_audio_format",
    "output_audio_format",
    "turn_detection",
    "input_audio_transcription",
    "tools",
    "prompt",
    *_PLATFORM_ONLY,
)
_TRANSCRIPTION_TOP_LEVEL = (
    "type",
    "audio",
    "input_audio_format",
    "turn_detection",
    "input_audio_transcription",
    "include",
)
