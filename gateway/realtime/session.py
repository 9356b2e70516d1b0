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

from gateway.realtime.protocol import PCM_FORMAT, RealtimeError, invalid_type, new_id

DEFAULT_VOICE = "alloy"
PCM_FORMATS = ("pcm16", {"type": "audio/pcm"}, PCM_FORMAT)
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


def _pcm_format(value, param: str, direction: str) -> None:
    if not isinstance(value, str | dict):
        raise invalid_type(param, "an object", value)
    if value not in PCM_FORMATS:
        raise RealtimeError(
            f"Only pcm16 {direction} is supported: {{'type': 'audio/pcm', 'rate': 24000}}.",
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


def _push_to_talk(value, param: str) -> None:
    if value is not None:
        _object(value, param)
        raise RealtimeError(
            "Only push-to-talk is supported (`turn_detection: null`): commit the input audio "
            "buffer and send response.create yourself.",
            "invalid_value",
            param,
        )


def _transcription(value, param: str) -> None:
    """Input transcription always runs (items carry their transcript); its options are
    checked and otherwise the cascade's own transcriber decides."""
    options = _optional_object(value, param)
    _only_known(options, ("model", "language", "prompt"), param)
    for name, option in options.items():
        if option is not None:
            _string(option, f"{param}.{name}")


def _unsupported(value, param: str, what: str) -> None:
    if value is not None:
        raise RealtimeError(f"{what} is not supported here.", "invalid_value", param)


def _speed(value, param: str) -> None:
    # The cascade speaks at the voice's own pace; a faster or slower reply is not made.
    if value is not None and _number(value, param, 0.25, 1.5) != 1.0:
        raise RealtimeError("Only speed 1.0 is supported here.", "invalid_value", param)


def _same_session(update: dict, model: str, models: Collection[str]) -> None:
    """A session keeps its type and model: another model is another session."""
    if (kind := update.get("type")) is not None and _string(kind, "session.type") != ("realtime"):
        raise RealtimeError(
            f"Invalid value: '{kind}'. Only 'realtime' sessions are served here.",
            "invalid_value",
            "session.type",
        )
    if (asked := update.get("model")) is not None and _string(asked, "session.model") not in models:
        raise RealtimeError(
            f"The session's model is `{model}`; open a new session to use `{asked}`.",
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


@dataclass
class Session:
    """The session a socket runs: what `session.created` / `session.updated` show."""

    fields: dict
    temperature: float = 0.8  # OpenAI's realtime default

    @classmethod
    def opened(cls, model: str) -> "Session":
        """A new socket's session: push-to-talk pcm16 in, spoken pcm16 out."""
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
                    "input": {"format": PCM_FORMAT, "turn_detection": None},
                    "output": {"format": PCM_FORMAT, "voice": DEFAULT_VOICE, "speed": 1.0},
                },
            }
        )

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
        _only_known(update, _TOP_LEVEL, "session")
        fields = copy.deepcopy(self.fields)
        _same_session(update, fields["model"], models)
        _reply_fields(update, fields)
        temperature = self.temperature
        if (value := update.get("temperature")) is not None:
            temperature = _number(value, "session.temperature", 0, 2)
        _without_effect(update)
        audio = _optional_object(update.get("audio"), "session.audio")
        _only_known(audio, ("input", "output"), "session.audio")
        self._input(audio, update)
        fields["audio"]["output"].update(self._output(audio, update, voices))
        return Session(fields, temperature)

    @staticmethod
    def _input(audio: dict, update: dict) -> None:
        """Checks only: input is always pcm16 at 24 kHz, push-to-talk, transcribed."""
        raw = _optional_object(audio.get("input"), "session.audio.input")
        _only_known(
            raw,
            ("format", "turn_detection", "transcription", "noise_reduction"),
            "session.audio.input",
        )
        for value, param in (
            (raw.get("format"), "session.audio.input.format"),
            (update.get("input_audio_format"), "session.input_audio_format"),
        ):
            if value is not None:
                _pcm_format(value, param, "input")
        for value, param in (
            (raw.get("turn_detection"), "session.audio.input.turn_detection"),
            (update.get("turn_detection"), "session.turn_detection"),
        ):
            _push_to_talk(value, param)
        _transcription(raw.get("transcription"), "session.audio.input.transcription")
        _transcription(update.get("input_audio_transcription"), "session.input_audio_transcription")
        noise = raw.get("noise_reduction")
        if noise is not None:
            _object(noise, "session.audio.input.noise_reduction")
        _unsupported(noise, "session.audio.input.noise_reduction", "Noise reduction")

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
                _pcm_format(value, param, "output")
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
