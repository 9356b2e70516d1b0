"""The realtime websocket: a push-to-talk subset of OpenAI's Realtime protocol, on Channels.

`wss://HOST/v1/realtime?model=local/audio-chat`. Events carry OpenAI's names and shapes:

client  session.update, input_audio_buffer.append (base64 pcm16, 24 kHz mono),
        input_audio_buffer.commit, input_audio_buffer.clear, response.create, response.cancel
server  session.created, session.updated, input_audio_buffer.committed,
        input_audio_buffer.cleared, conversation.item.created (with the user's transcript),
        response.created, response.output_item.added, response.output_audio_transcript.delta
        (or response.output_text.delta), response.output_audio.delta, the matching .done
        events, response.done (with usage), error

Push-to-talk only: the client decides when a turn ends (commit) and when to answer
(response.create); there is no server voice activity detection. A bad message gets an
`error` event and the socket stays open; bad credentials get an `error` then close 1008.
Each response is one usage record, also when it is cancelled or the client leaves.
"""

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import uuid
import wave
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from channels.generic.websocket import AsyncWebsocketConsumer

from gateway.catalog import catalog
from gateway.chat.conversation import Turn
from gateway.errors import OpenAIError, invalid_param
from gateway.middleware import new_request_id
from gateway.providers import provider_for
from gateway.providers.base import ChatJob, ChatTurn
from gateway.providers.cascade import PCM_RATE, Heard, Spoken
from usage.ledger import Charge
from usage.pricing import Metered

logger = logging.getLogger(__name__)

ENDPOINT = "/v1/realtime"
POLICY_VIOLATION = 1008
DEFAULT_MODEL = "local/audio-chat"
DEFAULT_VOICE = "alloy"
MAX_BUFFER_BYTES = 24 * 1024 * 1024  # about 8 minutes of 24 kHz pcm16
PCM_FORMAT = {"type": "audio/pcm", "rate": PCM_RATE}
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "response.create",
    "response.cancel",
)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:22]}"


def pcm16_to_wav(pcm: bytes, rate: int = PCM_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


@dataclass
class SocketRequest:
    """What the ledger needs from a request, for a websocket response."""

    auth: object  # the ApiKey billed
    request_id: str


class RealtimeError(Exception):
    """A client mistake answered with an `error` event; the socket stays open."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def same_site_origin(scope) -> bool:
    """Whether the handshake's Origin is one of ALLOWED_HOSTS (browsers always send one)."""
    from django.conf import settings
    from django.http.request import split_domain_port, validate_host

    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin", b"").decode("latin1")
    host = urlparse(origin).netloc if origin else ""
    if not host:
        return False
    domain, _ = split_domain_port(host)
    return validate_host(domain, settings.ALLOWED_HOSTS)


async def key_for_session_user(user, key_id: str | None):
    """The team key a logged-in playground user chose to bill, if it is theirs and usable."""
    from accounts.models import ApiKey
    from gateway.errors import invalid_api_key

    if not key_id or not key_id.isdigit():
        raise invalid_api_key(
            "Choose which of your team's API keys to bill with the `key_id` query parameter."
        )
    api_key = (
        await ApiKey.objects.usable()
        .filter(pk=int(key_id), team__memberships__user=user)
        .select_related("team")
        .afirst()
    )
    if api_key is None:
        raise invalid_api_key(f"No usable API key {key_id} in your teams.")
    return api_key


class RealtimeConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        offered = self.scope.get("subprotocols", [])
        # A browser that offers subprotocols needs one chosen back; OpenAI's is "realtime".
        await self.accept(
            "realtime" if "realtime" in offered else (offered[0] if offered else None)
        )
        self.response_task: asyncio.Task | None = None
        self.buffer = bytearray()
        self.history: list[ChatTurn] = []
        self.pending_heard: list[Heard] = []
        self.last_item_id: str | None = None
        self.temperature = 0.8  # OpenAI's realtime default
        try:
            self.api_key = await self._authenticate()
            query = parse_qs(self.scope.get("query_string", b"").decode())
            self.model = (query.get("model") or [DEFAULT_MODEL])[0]
            self.entry = catalog().resolve(self.model, "chat")
            self.provider = provider_for(self.entry)
            hears_and_speaks = self.entry.accepts("audio") and self.entry.produces("audio")
            # Realtime runs the cascade here; an upstream audio model is chat-only for now.
            if not hears_and_speaks or not hasattr(self.provider, "converse"):
                raise invalid_param(
                    f"The model `{self.model}` does not support realtime audio "
                    "(it needs audio input and output).",
                    param="model",
                    code="unsupported_value",
                )
        except OpenAIError as exc:
            await self.send_event("error", error=self._error_body(exc))
            await self.close(code=POLICY_VIOLATION)
            return
        self.session = {
            "type": "realtime",
            "object": "realtime.session",
            "id": _id("sess"),
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": "",
            "max_output_tokens": "inf",
            "audio": {
                "input": {"format": PCM_FORMAT, "turn_detection": None},
                "output": {"format": PCM_FORMAT, "voice": DEFAULT_VOICE, "speed": 1.0},
            },
        }
        await self.send_event("session.created", session=self.session)

    async def _authenticate(self):
        if self.scope.get("api_key") is not None:
            return self.scope["api_key"]
        if self.scope.get("auth_error") is not None:
            raise self.scope["auth_error"]
        if not same_site_origin(self.scope):
            # Cookies ride along on cross-site websocket handshakes; only our own pages
            # may use the session.
            raise OpenAIError(
                "Session authentication is only accepted from this site's own pages.",
                status=403,
                code="invalid_origin",
            )
        query = parse_qs(self.scope.get("query_string", b"").decode())
        return await key_for_session_user(self.scope["user"], (query.get("key_id") or [None])[0])

    @staticmethod
    def _error_body(exc: OpenAIError) -> dict:
        return {"type": exc.type, "code": exc.code, "message": exc.message, "param": exc.param}

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "response_task", None)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- sending --------------------------------------------------------------------

    async def send_event(self, type: str, **fields) -> None:
        await self.send(text_data=json.dumps({"type": type, "event_id": _id("event"), **fields}))

    async def send_client_error(self, error: RealtimeError, event_id: str | None) -> None:
        await self.send_event(
            "error",
            error={
                "type": "invalid_request_error",
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "event_id": event_id,
            },
        )

    # --- receiving ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        event_id = None
        try:
            if text_data is None:
                raise RealtimeError(
                    "Binary frames are not accepted; send JSON events "
                    "(audio goes base64 in input_audio_buffer.append).",
                    code="invalid_event",
                )
            try:
                event = json.loads(text_data)
            except ValueError:
                raise RealtimeError("The event is not valid JSON.", code="invalid_json") from None
            if not isinstance(event, dict):
                raise RealtimeError("An event must be a JSON object.", code="invalid_event")
            event_id = event.get("event_id")
            kind = event.get("type")
            if kind not in CLIENT_EVENTS:
                raise RealtimeError(
                    f"Invalid value: '{kind}'. Supported values are: "
                    + ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
                    + ".",
                    code="invalid_value",
                    param="type",
                )
            handler = getattr(self, "on_" + kind.replace(".", "_"))
            await handler(event)
        except RealtimeError as error:
            await self.send_client_error(error, event_id)
        except OpenAIError as exc:
            await self.send_client_error(
                RealtimeError(exc.message, exc.code or "invalid_value", exc.param), event_id
            )

    async def on_session_update(self, event: dict) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise RealtimeError("`session` must be an object.", "invalid_type", "session")
        output = dict(self.session["audio"]["output"])
        raw_audio = update.get("audio") or {}
        raw_output = raw_audio.get("output") or {} if isinstance(raw_audio, dict) else {}
        voice = raw_output.get("voice", update.get("voice"))
        if voice is not None:
            voices = self.provider.voices()
            if voice not in voices:
                raise RealtimeError(
                    f"Invalid value: '{voice}'. Supported voices are: "
                    + ", ".join(f"'{v}'" for v in voices)
                    + ".",
                    "invalid_value",
                    "session.audio.output.voice",
                )
            output["voice"] = voice
        fmt = raw_output.get("format", update.get("output_audio_format"))
        if fmt is not None and fmt not in ("pcm16", PCM_FORMAT, {"type": "audio/pcm"}):
            raise RealtimeError(
                "Only pcm16 output is supported: {'type': 'audio/pcm', 'rate': 24000}.",
                "invalid_value",
                "session.audio.output.format",
            )
        in_fmt = (
            (raw_audio.get("input") or {}).get("format") if isinstance(raw_audio, dict) else None
        )
        in_fmt = in_fmt if in_fmt is not None else update.get("input_audio_format")
        if in_fmt is not None and in_fmt not in ("pcm16", PCM_FORMAT, {"type": "audio/pcm"}):
            raise RealtimeError(
                "Only pcm16 input is supported: {'type': 'audio/pcm', 'rate': 24000}.",
                "invalid_value",
                "session.audio.input.format",
            )
        instructions = update.get("instructions")
        if instructions is not None:
            if not isinstance(instructions, str):
                raise RealtimeError(
                    "`instructions` must be a string.", "invalid_type", "session.instructions"
                )
            self.session["instructions"] = instructions
        modalities = update.get("output_modalities", update.get("modalities"))
        if modalities is not None:
            if modalities not in (["audio"], ["text"], ["text", "audio"], ["audio", "text"]):
                raise RealtimeError(
                    "`output_modalities` must be ['audio'] or ['text'].",
                    "invalid_value",
                    "session.output_modalities",
                )
            self.session["output_modalities"] = ["text"] if modalities == ["text"] else ["audio"]
        if "max_output_tokens" in update or "max_response_output_tokens" in update:
            limit = update.get("max_output_tokens", update.get("max_response_output_tokens"))
            self.session["max_output_tokens"] = output_token_limit(
                limit, "session.max_output_tokens"
            )
        if update.get("temperature") is not None:
            temperature = update["temperature"]
            if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
                raise RealtimeError(
                    "`temperature` must be a number from 0 to 2.",
                    "invalid_value",
                    "session.temperature",
                )
            self.temperature = float(temperature)
        self.session["audio"]["output"] = output
        await self.send_event("session.updated", session=self.session)

    async def on_input_audio_buffer_append(self, event: dict) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError("`audio` must be a base64 string.", "invalid_type", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("`audio` is not valid base64.", "invalid_value", "audio") from None
        if len(pcm) % 2:
            raise RealtimeError(
                "pcm16 audio must be a whole number of 16-bit samples.", "invalid_value", "audio"
            )
        if len(self.buffer) + len(pcm) > MAX_BUFFER_BYTES:
            raise RealtimeError(
                "The input audio buffer is full; commit or clear it.",
                "input_audio_buffer_full",
                "audio",
            )
        self.buffer += pcm

    async def on_input_audio_buffer_clear(self, event: dict) -> None:
        self.buffer = bytearray()
        await self.send_event("input_audio_buffer.cleared")

    async def on_input_audio_buffer_commit(self, event: dict) -> None:
        # OpenAI refuses less than 100 ms of audio.
        if len(self.buffer) < PCM_RATE // 10 * 2:
            raise RealtimeError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {len(self.buffer) / 2 / PCM_RATE * 1000:.2f}"
                "ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        pcm, self.buffer = bytes(self.buffer), bytearray()
        item_id = _id("item")
        previous, self.last_item_id = self.last_item_id, item_id
        await self.send_event(
            "input_audio_buffer.committed", previous_item_id=previous, item_id=item_id
        )
        heard = await self.provider.hear(pcm16_to_wav(pcm), "wav", "audio")
        self.pending_heard.append(heard)
        self.history.append(ChatTurn(role="user", text=heard.text))
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": heard.text}],
        }
        await self.send_event("conversation.item.created", previous_item_id=previous, item=item)
        await self.send_event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=heard.text,
        )

    async def on_response_create(self, event: dict) -> None:
        if self.response_task is not None and not self.response_task.done():
            raise RealtimeError(
                "Conversation already has an active response in progress.",
                "conversation_already_has_active_response",
            )
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise RealtimeError("`response` must be an object.", "invalid_type", "response")
        limit = self.session["max_output_tokens"]
        if "max_output_tokens" in options:
            limit = output_token_limit(options["max_output_tokens"], "response.max_output_tokens")
        if not self.history:
            raise RealtimeError(
                "Nothing to respond to: commit some input audio first.",
                "conversation_empty",
            )
        self.response_task = asyncio.ensure_future(self.respond(limit))

    async def on_response_cancel(self, event: dict) -> None:
        task = self.response_task
        if task is None or task.done():
            raise RealtimeError(
                "Cancellation failed: no active response found.", "response_cancel_not_active"
            )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # --- responding -----------------------------------------------------------------

    async def respond(self, limit: int | str) -> None:
        """One response: runs as a task, so response.cancel can stop it mid-way."""
        response_id, item_id = _id("resp"), _id("item")
        speaking = self.session["output_modalities"] == ["audio"]
        output = self.session["audio"]["output"]
        messages = list(self.history)
        if self.session["instructions"]:
            messages.insert(0, ChatTurn(role="system", text=self.session["instructions"]))
        heard, self.pending_heard = self.pending_heard, []
        turn = Turn(
            entry=self.entry,
            provider=self.provider,
            job=ChatJob(
                messages=messages,
                max_tokens=_max_tokens() if limit == "inf" else limit,
                temperature=self.temperature,
            ),
            heard=heard,
            voice=output["voice"] if speaking else None,
        )
        charge = Charge(
            request=SocketRequest(auth=self.api_key, request_id=new_request_id()),
            entry=self.entry,
            endpoint=ENDPOINT,
        )
        try:
            await charge.admit(Metered(text_tokens_out=turn.job.max_tokens))
        except OpenAIError as exc:  # a limit of the key: no response, the socket stays open
            self.pending_heard = heard + self.pending_heard
            await self.send_event("error", error={**exc.body()["error"], "event_id": None})
            return
        response = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": None,
            "output_modalities": self.session["output_modalities"],
            "max_output_tokens": limit,
            "audio": {"output": {"format": PCM_FORMAT, "voice": output["voice"]}},
            "usage": None,
            "metadata": None,
        }
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        part = {"type": "audio", "transcript": ""} if speaking else {"type": "text", "text": ""}
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        status, status_code = "completed", 200
        status_details = None
        try:
            # As for HTTP streams: a worker that dies mid-turn leaves the turn in the ledger,
            # marked interrupted (record() below completes the row).
            await charge.open_stream()
            await self.send_event("response.created", response=response)
            await self.send_event(
                "response.output_item.added", response_id=response_id, output_index=0, item=item
            )
            await self.send_event(
                "response.content_part.added", **where, content_index=0, part=part
            )
            text_event = (
                "response.output_audio_transcript.delta"
                if speaking
                else "response.output_text.delta"
            )
            async with contextlib.aclosing(turn.events()) as events:
                async for event in events:
                    if isinstance(event, str):
                        await self.send_event(text_event, **where, content_index=0, delta=event)
                    elif isinstance(event, Spoken):
                        await self.send_event(
                            "response.output_audio.delta",
                            **where,
                            content_index=0,
                            delta=base64.b64encode(event.pcm).decode("ascii"),
                        )
            if turn.reply is not None and turn.reply.finish_reason == "length":
                status = "incomplete"
                status_details = {"type": "incomplete", "reason": "max_output_tokens"}
            if speaking:
                await self.send_event("response.output_audio.done", **where, content_index=0)
                await self.send_event(
                    "response.output_audio_transcript.done",
                    **where,
                    content_index=0,
                    transcript=turn.text,
                )
            else:
                await self.send_event(
                    "response.output_text.done", **where, content_index=0, text=turn.text
                )
        except asyncio.CancelledError:
            status = "cancelled"
            status_details = {"type": "cancelled", "reason": "client_cancelled"}
        except Exception as exc:  # a broken engine must not kill the socket
            logger.exception("realtime response failed")
            status, status_code = "failed", 500
            error = exc if isinstance(exc, OpenAIError) else None
            status_details = {
                "type": "failed",
                "error": {
                    "type": error.type if error else "server_error",
                    "code": error.code if error else None,
                    "message": error.message if error else "The response failed.",
                },
            }
        finally:
            usage = await turn.usage()
            usage.meter(charge.metered)
            await charge.record(status_code)
        if turn.text:
            self.history.append(ChatTurn(role="assistant", text=turn.text))
        part = (
            {"type": "audio", "transcript": turn.text}
            if speaking
            else {"type": "text", "text": turn.text}
        )
        item = dict(item, status="completed" if status == "completed" else "incomplete")
        item["content"] = [
            {"type": "output_audio", "transcript": turn.text}
            if speaking
            else {"type": "output_text", "text": turn.text}
        ]
        if status != "cancelled":
            await self.send_event("response.content_part.done", **where, content_index=0, part=part)
            await self.send_event(
                "response.output_item.done", response_id=response_id, output_index=0, item=item
            )
        response.update(
            status=status,
            status_details=status_details,
            output=[item],
            usage={
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
                "cost": float(charge.cost) if status_code < 400 else 0.0,
            },
        )
        await self.send_event("response.done", response=response)


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


def _max_tokens() -> int:
    from django.conf import settings

    return settings.AROUTER_CHAT_MAX_TOKENS
