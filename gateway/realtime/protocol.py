"""The realtime protocol's events: reading what clients send, building what we send.

Names and shapes are OpenAI's Realtime API (GA). Nothing here runs an engine or bills;
the consumer and the turns call these to parse, refuse and describe.
"""

import json
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

from core.errors import OpenAIError, json_type_name
from gateway.chat.token_usage import ChatUsage
from gateway.providers.base import PCM_RATE

PCM_FORMAT = {"type": "audio/pcm", "rate": PCM_RATE}
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "response.create",
    "response.cancel",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "conversation.item.truncate",
)

# Sends one server event: its type and fields (the consumer adds the event_id).
Send = Callable[..., Awaitable[None]]


class RealtimeError(Exception):
    """A client mistake answered with an `error` event; the socket stays open."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def invalid_type(param: str, expected: str, value) -> RealtimeError:
    got = json_type_name(value)
    return RealtimeError(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        "invalid_type",
        param,
    )


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:22]}"


def server_event(type: str, **fields) -> str:
    return json.dumps({"type": type, "event_id": new_id("event"), **fields})


# --- client events ----------------------------------------------------------------------


def parse_event(text_data: str | None) -> dict:
    """The JSON object of a text frame, or the RealtimeError saying why it is none."""
    if text_data is None:
        raise RealtimeError(
            "Binary frames are not accepted; send JSON events "
            "(audio goes base64 in input_audio_buffer.append).",
            code="invalid_event",
        )
    try:
        event = json.loads(text_data)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's stack
        raise RealtimeError("The event is not valid JSON.", code="invalid_json") from None
    if not isinstance(event, dict):
        raise RealtimeError("An event must be a JSON object.", code="invalid_event")
    return event


def event_id_of(event: dict) -> str | None:
    """The client's event_id, echoed in an error about that event (a string, or none)."""
    return event.get("event_id") if isinstance(event.get("event_id"), str) else None


def event_kind(event: dict) -> str:
    """The event's type, one of CLIENT_EVENTS."""
    kind = event.get("type")
    if not isinstance(kind, str):
        raise invalid_type("type", "a string", kind)
    if kind not in CLIENT_EVENTS:
        raise RealtimeError(
            f"Invalid value: '{kind[:64]}'. Supported values are: "
            + ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
            + ".",
            code="invalid_value",
            param="type",
        )
    return kind


# --- errors -----------------------------------------------------------------------------


def error_body(exc: OpenAIError, event_id: str | None = None) -> dict:
    """OpenAI's realtime `error` object: the HTTP envelope's fields and the event's id."""
    return {**exc.body()["error"], "event_id": event_id}


def client_error_body(error: RealtimeError, event_id: str | None) -> dict:
    return {
        "type": "invalid_request_error",
        "code": error.code,
        "message": error.message,
        "param": error.param,
        "event_id": event_id,
    }


def transcription_error(exc: OpenAIError) -> dict:
    """The `error` of conversation.item.input_audio_transcription.failed."""
    return {key: exc.body()["error"][key] for key in ("type", "code", "message", "param")}


def failure_details(exc: Exception) -> dict:
    """A failed response's status_details: an OpenAI error's fields, or a generic one."""
    error = exc if isinstance(exc, OpenAIError) else None
    return {
        "type": "failed",
        "error": {
            "type": error.type if error else "server_error",
            "code": error.code if error else None,
            "message": error.message if error else "The response failed.",
        },
    }


# --- items and responses ----------------------------------------------------------------


def transcription_usage(audio_tokens: int | None, seconds: float, cost: Decimal) -> dict:
    """The usage of a heard buffer, and what its ledger row charged: its audio tokens in a
    conversation, its duration in a transcription session (`audio_tokens` None)."""
    if audio_tokens is None:
        return {"type": "duration", "seconds": round(seconds, 3), "cost": float(cost)}
    return {
        "type": "tokens",
        "input_tokens": audio_tokens,
        "output_tokens": 0,
        "total_tokens": audio_tokens,
        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
        "cost": float(cost),
    }


def content_part(speaking: bool, text: str = "") -> dict:
    """The part of response.content_part.added / .done."""
    return {"type": "audio", "transcript": text} if speaking else {"type": "text", "text": text}


def response_object(
    response_id: str, modalities: list[str], limit: int | str, voice: str, audio_format: dict
) -> dict:
    return {
        "object": "realtime.response",
        "id": response_id,
        "status": "in_progress",
        "status_details": None,
        "output": [],
        "conversation_id": None,
        "output_modalities": modalities,
        "max_output_tokens": limit,
        "audio": {"output": {"format": audio_format, "voice": voice}},
        "usage": None,
        "metadata": None,
    }


def response_usage(usage: ChatUsage, cost: Decimal | float) -> dict:
    return {
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "input_token_details": {
            "text_tokens": usage.text_in,
            "audio_tokens": usage.audio_in,
            "cached_tokens": 0,
        },
        "output_token_details": {
            "text_tokens": usage.text_out,
            "audio_tokens": usage.audio_out,
        },
        "cost": float(cost),
    }
