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
turn is then admitted against the key's limits before any engine runs; `turns` says how
each is billed.

This module only connects, dispatches events and ends sessions; the events are built in
`protocol`, the session in `session`, the input audio in `audio_buffer`, the turns in
`turns`.
"""

import contextlib
import logging
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import InterfaceError, OperationalError

from core.api_requests import new_request_id
from core.errors import OpenAIError, database_unavailable, invalid_api_key, server_error
from gateway.lifecycle import MeteredCall
from gateway.realtime import protocol
from gateway.realtime.audio_buffer import AudioBuffer
from gateway.realtime.auth import authenticate, current_key
from gateway.realtime.protocol import RealtimeError
from gateway.realtime.relay import Relay, relayed
from gateway.realtime.revocation import key_group
from gateway.realtime.session import Session
from gateway.realtime.turns import Conversation, Response, voice_chat_model

logger = logging.getLogger(__name__)

ENDPOINT = "/v1/realtime"
POLICY_VIOLATION = 1008
DEFAULT_MODEL = "local/audio-chat"
REVOKED = "This API key has been revoked."


def _subprotocol(offered: list[str]) -> str | None:
    # A browser that offers subprotocols needs one chosen back; OpenAI's is "realtime".
    return "realtime" if "realtime" in offered else (offered[0] if offered else None)


def _error_event(exc: Exception, kind: str | None, event_id: str | None) -> dict:
    """The `error` event's object for what handling an event raised."""
    if isinstance(exc, RealtimeError):
        return protocol.client_error_body(exc, event_id)
    if isinstance(exc, OpenAIError):  # a limit of the key, a bad audio buffer: its own type
        return protocol.error_body(exc, event_id)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable for realtime %s: %s", kind, exc)
        return protocol.error_body(database_unavailable(), event_id)
    # A bug must cost one event, not the socket.
    logger.error("realtime event %s failed", kind, exc_info=exc)
    return protocol.error_body(server_error(), event_id)


class RealtimeConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept(_subprotocol(self.scope.get("subprotocols", [])))
        self.response: Response | None = None
        self.buffer = AudioBuffer()
        self.group: str | None = None
        self.ended_by: OpenAIError | None = None  # the credentials went away: closing
        try:
            self.api_key, self.credential = await authenticate(self.scope)
            query = parse_qs(self.scope.get("query_string", b"").decode())
            minted = self.scope.get("minted_session")
            default = (minted or {}).get("model") or DEFAULT_MODEL
            self.model = (query.get("model") or [default])[0]
            entry, provider = voice_chat_model(self.model)
        except OpenAIError as exc:
            self.ended_by = exc  # events that still arrive before the close are not served
            await self.send_event("error", error=protocol.error_body(exc))
            await self.close(code=POLICY_VIOLATION)
            return
        self.conversation = Conversation(entry, provider, self.send_event)
        await self._join_key_group()
        if relayed(entry):  # an upstream's realtime model: its events pass through
            self.relay = await Relay.open(entry, self)
            return
        self.session = Session.opened(self.model)
        if minted:  # checked when the client secret was minted
            minted = {name: value for name, value in minted.items() if name != "model"}
            try:
                self.session = self.session.updated(minted, (self.model,), provider.voices())
            except RealtimeError as exc:  # another ?model= without the minted voice
                await self.send_event("error", error=protocol.client_error_body(exc, None))
        await self.send_event("session.created", session=self.session.fields)

    async def _join_key_group(self) -> None:
        """Listen for the key's revocation, sent to its group by whichever worker revokes
        it (gateway.realtime.revocation)."""
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
        if getattr(self, "relay", None) is not None:
            await self.relay.close()
        if getattr(self, "group", None):
            with contextlib.suppress(Exception):  # the group expires on its own
                await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _stop_response(self) -> None:
        if (response := getattr(self, "response", None)) is not None:
            await response.stop(getattr(self, "ended_by", None))

    def _responding(self) -> bool:
        return self.response is not None and self.response.active

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
        await self.send_event("error", error=protocol.error_body(exc, event_id))
        await self.close(code=POLICY_VIOLATION)

    async def key_revoked(self, message: dict) -> None:
        """The group message a revocation sends (revocation.KEY_REVOKED)."""
        await self.end_session(invalid_api_key(REVOKED), None)

    def _metered_call(self) -> MeteredCall:
        return MeteredCall(self.api_key, self.conversation.entry, ENDPOINT, new_request_id())

    # --- events -----------------------------------------------------------------------

    async def send_event(self, type: str, **fields) -> None:
        await self.send(text_data=protocol.server_event(type, **fields))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        if self.ended_by is not None:
            return  # closing: what the client still sends is not served
        if getattr(self, "relay", None) is not None:  # relayed: passed on as it came
            await self.relay.from_client(text_data, bytes_data)
            return
        event_id = kind = None
        try:
            event = protocol.parse_event(text_data)
            event_id = protocol.event_id_of(event)
            kind = protocol.event_kind(event)
            handler = getattr(self, "on_" + kind.replace(".", "_"))
            await handler(event, event_id)
        except Exception as exc:
            await self.send_event("error", error=_error_event(exc, kind, event_id))

    async def on_session_update(self, event: dict, event_id: str | None) -> None:
        entry, provider = self.conversation.entry, self.conversation.provider
        models = (self.model, entry.id)
        self.session = self.session.updated(event.get("session"), models, provider.voices())
        await self.send_event("session.updated", session=self.session.fields)

    async def on_input_audio_buffer_append(self, event: dict, event_id: str | None) -> None:
        self.buffer.append(event.get("audio"))

    async def on_input_audio_buffer_clear(self, event: dict, event_id: str | None) -> None:
        self.buffer.clear()
        await self.send_event("input_audio_buffer.cleared")

    async def on_input_audio_buffer_commit(self, event: dict, event_id: str | None) -> None:
        self.buffer.check_committable()
        if await self._still_allowed(event_id):
            await self.conversation.commit(self.buffer, self._metered_call())

    async def on_response_create(self, event: dict, event_id: str | None) -> None:
        if self._responding():
            raise RealtimeError(
                "Conversation already has an active response in progress.",
                "conversation_already_has_active_response",
            )
        limit = self.session.response_limit(event.get("response"))
        self.conversation.check_answerable()
        if await self._still_allowed(event_id):
            call = self._metered_call()
            self.response = await self.conversation.respond(self.session, limit, call)

    async def on_response_cancel(self, event: dict, event_id: str | None) -> None:
        if not self._responding():
            raise RealtimeError(
                "Cancellation failed: no active response found.", "response_cancel_not_active"
            )
        await self.response.stop()
