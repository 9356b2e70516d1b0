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

Every turn (commit, response.create) reads the key from the database again, with the
team membership and login of a playground user: a revoked or expired key, a member who
left, a user who logged out end the session with an `error` and close 1008. Revoking a
key also closes its sockets at once, in every worker, through the Channels layer. Each
turn is then admitted against the key's limits before any engine runs.

Billing: each committed buffer is a ledger row of its own, the audio heard (seconds and
audio tokens at the model's audio input price), written whether or not a response
follows; its `conversation.item.input_audio_transcription.completed` event carries that
usage and cost. Each response is another row (text in, text and audio out; the transcript
it reads is not billed again), also when it is cancelled or the client leaves; its
`response.done` usage and cost are that row's.
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
from urllib.parse import parse_qs, urlparse

from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import InterfaceError, OperationalError

from accounts.models import key_group
from core.api_requests import new_request_id
from core.errors import SERVER, OpenAIError, invalid_api_key, invalid_param, server_error
from gateway.catalog import catalog
from gateway.chat.conversation import Turn
from gateway.lifecycle import MeteredCall
from gateway.pricing import audio_tokens, audio_tokens_per_second
from gateway.providers import provider_for
from gateway.providers.base import PCM_RATE, ChatJob, ChatTurn, Heard, Spoken, VoiceChat
from gateway.realtime.auth import Credential, current_key
from gateway.realtime.session import (
    PCM_FORMAT,
    RealtimeError,
    Session,
    invalid_type,
    output_token_limit,
)
from usage.ledger import Metered

logger = logging.getLogger(__name__)

ENDPOINT = "/v1/realtime"
POLICY_VIOLATION = 1008
DEFAULT_MODEL = "local/audio-chat"
DEFAULT_VOICE = "alloy"
MAX_BUFFER_BYTES = 24 * 1024 * 1024  # about 8 minutes of 24 kHz pcm16
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "response.create",
    "response.cancel",
)
REVOKED = "This API key has been revoked."


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


def _host_and_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    from django.http.request import split_domain_port

    domain, port = split_domain_port(netloc)
    if not domain or (port and not port.isdigit()):
        return None
    return domain, int(port) if port else default_port


def same_site_origin(scope) -> bool:
    """Whether the handshake comes from a page of this very server: the Origin's host and
    port are the Host the browser connected to, and that host is one of ALLOWED_HOSTS.

    Browsers always send an Origin. Comparing the host alone would let any other service
    on the same machine (another port: another origin) use a visitor's session."""
    from django.conf import settings
    from django.http.request import validate_host

    headers = dict(scope.get("headers", []))
    origin = urlparse(headers.get(b"origin", b"").decode("latin1"))
    host = headers.get(b"host", b"").decode("latin1").strip()
    default_port = {"http": 80, "https": 443}.get(origin.scheme)
    if default_port is None or not origin.netloc or not host:
        return False
    # A Host without a port is the default port of the scheme the page was served with.
    requested = _host_and_port(host, default_port)
    if requested is None or _host_and_port(origin.netloc, default_port) != requested:
        return False
    return validate_host(requested[0], settings.ALLOWED_HOSTS)


async def key_for_session_user(user, key_id: str | None):
    """The team key a logged-in playground user chose to bill, if it is theirs and usable."""
    from accounts.models import ApiKey

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


def error_body(exc: OpenAIError, event_id: str | None = None) -> dict:
    """OpenAI's realtime `error` object: the HTTP envelope's fields and the event's id."""
    return {**exc.body()["error"], "event_id": event_id}


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
        self.group: str | None = None
        self.ended_by: OpenAIError | None = None  # the credentials went away: closing
        try:
            self.api_key, self.credential = await self._authenticate()
            query = parse_qs(self.scope.get("query_string", b"").decode())
            self.model = (query.get("model") or [DEFAULT_MODEL])[0]
            self.entry = catalog().resolve(self.model, "chat")
            self.provider = provider_for(self.entry)
            hears_and_speaks = self.entry.accepts("audio") and self.entry.produces("audio")
            # Realtime runs the cascade here; an upstream audio model is chat-only for now.
            if not hears_and_speaks or not isinstance(self.provider, VoiceChat):
                raise invalid_param(
                    f"The model `{self.model}` does not support realtime audio "
                    "(it needs audio input and output).",
                    param="model",
                    code="unsupported_value",
                )
        except OpenAIError as exc:
            self.ended_by = exc  # events that still arrive before the close are not served
            await self.send_event("error", error=error_body(exc))
            await self.close(code=POLICY_VIOLATION)
            return
        await self._join_key_group()
        self.session = Session(
            {
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
        )
        await self.send_event("session.created", session=self.session.fields)

    async def _authenticate(self):
        if self.scope.get("api_key") is not None:
            return self.scope["api_key"], self.scope["credential"]
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
        user = self.scope["user"]
        api_key = await key_for_session_user(user, (query.get("key_id") or [None])[0])
        return api_key, Credential(api_key.pk, user.pk, self.scope["session"].session_key)

    async def _join_key_group(self) -> None:
        """Listen for ApiKey.revoke(), sent to this group from whichever worker revokes."""
        if self.channel_layer is None:
            return
        try:
            await self.channel_layer.group_add(key_group(self.api_key.pk), self.channel_name)
        except Exception:  # Redis away: the turns still read the key from the database
            logger.warning("realtime socket not told of revocations", exc_info=True)
            return
        self.group = key_group(self.api_key.pk)

    async def disconnect(self, code: int) -> None:
        await self._stop_response()
        if getattr(self, "group", None):
            with contextlib.suppress(Exception):  # the group expires on its own
                await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _stop_response(self) -> None:
        task = getattr(self, "response_task", None)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- credentials, at every turn --------------------------------------------------

    async def _still_allowed(self, event_id: str | None) -> bool:
        """Read the key again from the database (not the key cache, which other workers
        keep for a few seconds), with its limits; end the session if it is no longer
        usable by whoever opened it."""
        try:
            self.api_key = await current_key(self.credential)
        except OpenAIError as exc:
            await self.end_session(exc, event_id)
            return False
        return True

    async def end_session(self, exc: OpenAIError, event_id: str | None) -> None:
        """The credentials went away: stop any response, say why, close 1008."""
        if self.ended_by is not None:
            return
        self.ended_by = exc
        await self._stop_response()
        await self.send_event("error", error=error_body(exc, event_id))
        await self.close(code=POLICY_VIOLATION)

    async def key_revoked(self, message: dict) -> None:
        """The Channels group message ApiKey.revoke() sends (accounts.models.KEY_REVOKED)."""
        await self.end_session(invalid_api_key(REVOKED), None)

    def _charge(self) -> MeteredCall:
        return MeteredCall(self.api_key, self.entry, ENDPOINT, new_request_id())

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
        if self.ended_by is not None:
            return  # closing: what the client still sends is not served
        event_id = kind = None
        try:
            event = self._parse(text_data)
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
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
            handler = getattr(self, "on_" + kind.replace(".", "_"))
            await handler(event, event_id)
        except RealtimeError as error:
            await self.send_client_error(error, event_id)
        except OpenAIError as exc:  # a limit of the key, a bad audio buffer: its own type
            await self.send_event("error", error=error_body(exc, event_id))
        except (OperationalError, InterfaceError) as exc:
            logger.warning("database unavailable for realtime %s: %s", kind, exc)
            unavailable = OpenAIError(
                "The service's database is unavailable right now. Please retry in a few seconds.",
                status=503,
                type=SERVER,
                code="database_unavailable",
            )
            await self.send_event("error", error=error_body(unavailable, event_id))
        except Exception:  # a bug must cost one event, not the socket
            logger.exception("realtime event %s failed", kind)
            await self.send_event("error", error=error_body(server_error(), event_id))

    @staticmethod
    def _parse(text_data: str | None) -> dict:
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

    async def on_session_update(self, event: dict, event_id: str | None) -> None:
        models = (self.model, self.entry.id)
        self.session = self.session.updated(event.get("session"), models, self.provider.voices())
        await self.send_event("session.updated", session=self.session.fields)

    async def on_input_audio_buffer_append(self, event: dict, event_id: str | None) -> None:
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

    async def on_input_audio_buffer_clear(self, event: dict, event_id: str | None) -> None:
        self.buffer = bytearray()
        await self.send_event("input_audio_buffer.cleared")

    def _heard_audio(self, pcm: bytes) -> Metered:
        """What hearing `pcm` is billed: its seconds, and audio tokens by the catalog's rule."""
        seconds = len(pcm) / 2 / PCM_RATE
        rate = audio_tokens_per_second(self.entry)
        return Metered(
            audio_seconds_in=round(seconds, 3), audio_tokens_in=audio_tokens(seconds, rate)
        )

    async def on_input_audio_buffer_commit(self, event: dict, event_id: str | None) -> None:
        # OpenAI refuses less than 100 ms of audio.
        if len(self.buffer) < PCM_RATE // 10 * 2:
            raise RealtimeError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {len(self.buffer) / 2 / PCM_RATE * 1000:.2f}"
                "ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        if not await self._still_allowed(event_id):
            return
        heard_audio = self._heard_audio(self.buffer)
        charge = self._charge()
        # Before Whisper runs: a key that may not, or cannot pay, gets no transcript (the
        # buffer stays, to retry or clear).
        await charge.admit(heard_audio)
        pcm, self.buffer = bytes(self.buffer), bytearray()
        item_id = _id("item")
        previous, self.last_item_id = self.last_item_id, item_id
        await self.send_event(
            "input_audio_buffer.committed", previous_item_id=previous, item_id=item_id
        )
        heard = await self._hear(pcm, charge, heard_audio, item_id)
        if heard is None:
            return
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
        tokens = heard_audio.audio_tokens_in
        await self.send_event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=heard.text,
            usage={
                "type": "tokens",
                "input_tokens": tokens,
                "output_tokens": 0,
                "total_tokens": tokens,
                "input_token_details": {"audio_tokens": tokens, "text_tokens": 0},
                "cost": float(charge.charged),
            },
        )

    async def _hear(
        self, pcm: bytes, charge: MeteredCall, heard_audio: Metered, item_id: str
    ) -> Heard | None:
        """Transcribe a committed buffer and write its ledger row (billed when heard)."""
        status, failure = 500, server_error()
        try:
            heard = await self.provider.hear(pcm16_to_wav(pcm), "wav", "audio")
            status, charge.metered = 200, heard_audio
            return heard
        except OpenAIError as exc:
            status, failure = exc.status, exc
        except Exception:  # a broken engine must not kill the socket
            logger.exception("realtime input transcription failed")
        finally:
            await charge.finish(status)
        await self.send_event(
            "conversation.item.input_audio_transcription.failed",
            item_id=item_id,
            content_index=0,
            error={
                key: failure.body()["error"][key] for key in ("type", "code", "message", "param")
            },
        )
        return None

    async def on_response_create(self, event: dict, event_id: str | None) -> None:
        if self.response_task is not None and not self.response_task.done():
            raise RealtimeError(
                "Conversation already has an active response in progress.",
                "conversation_already_has_active_response",
            )
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise RealtimeError("`response` must be an object.", "invalid_type", "response")
        limit = self.session.fields["max_output_tokens"]
        if "max_output_tokens" in options:
            limit = output_token_limit(options["max_output_tokens"], "response.max_output_tokens")
        if not self.history:
            raise RealtimeError(
                "Nothing to respond to: commit some input audio first.",
                "conversation_empty",
            )
        if not await self._still_allowed(event_id):
            return
        max_tokens = _max_tokens() if limit == "inf" else limit
        charge = self._charge()
        await charge.admit(Metered(text_tokens_out=max_tokens))
        self.response_task = asyncio.ensure_future(self.respond(limit, max_tokens, charge))

    async def on_response_cancel(self, event: dict, event_id: str | None) -> None:
        task = self.response_task
        if task is None or task.done():
            raise RealtimeError(
                "Cancellation failed: no active response found.", "response_cancel_not_active"
            )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # --- responding -----------------------------------------------------------------

    async def respond(self, limit: int | str, max_tokens: int, charge: MeteredCall) -> None:
        """One admitted response: runs as a task, so response.cancel can stop it mid-way."""
        response_id, item_id = _id("resp"), _id("item")
        session = self.session.fields
        speaking = session["output_modalities"] == ["audio"]
        output = session["audio"]["output"]
        messages = list(self.history)
        if session["instructions"]:
            messages.insert(0, ChatTurn(role="system", text=session["instructions"]))
        heard, self.pending_heard = self.pending_heard, []
        turn = Turn(
            entry=self.entry,
            provider=self.provider,
            job=ChatJob(
                messages=messages, max_tokens=max_tokens, temperature=self.session.temperature
            ),
            # The transcripts of these are not billed as text: the audio was, at commit.
            heard=heard,
            voice=output["voice"] if speaking else None,
        )
        response = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": None,
            "output_modalities": session["output_modalities"],
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
            await charge.mark_started()
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
            if (ended_by := self.ended_by) is not None:  # what was made until then is billed
                status = "failed"
                status_details = {"type": "failed", "error": error_body(ended_by)}
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
            # The audio heard was billed with its commit (its own row): not again here.
            usage.audio_in, usage.audio_seconds_in = 0, 0.0
            usage.meter(charge.metered)
            await charge.finish(status_code)
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


def _max_tokens() -> int:
    from django.conf import settings

    return settings.AROUTER_CHAT_MAX_TOKENS
