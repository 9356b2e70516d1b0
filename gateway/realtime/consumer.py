"""The realtime websocket: OpenAI's Realtime protocol (GA event names) on Channels.

`wss://HOST/v1/realtime?model=local/audio-chat` converses; `?intent=transcription` (or a
session of type "transcription") only transcribes. Events carry OpenAI's names and shapes:

client  session.update, input_audio_buffer.append / commit / clear, response.create,
        response.cancel, conversation.item.create / delete / retrieve / truncate
server  session.created / updated, input_audio_buffer.speech_started / speech_stopped /
        committed / cleared / timeout_triggered, conversation.item.added / done / deleted /
        retrieved / truncated, conversation.item.input_audio_transcription.delta /
        completed / failed, response.created, response.output_item.added / done,
        response.content_part.added / done, response.output_audio.delta / done,
        response.output_audio_transcript.delta / done (or response.output_text.*),
        response.done (with usage and cost), error

Turns are found by server VAD (OpenAI's default; `turn_detection: null` is push-to-talk):
speech starts a turn (and, with `interrupt_response`, cancels the response being spoken:
barge-in), a long enough silence ends it, commits it, and with `create_response` answers
it. While the user speaks, each pause has the audio so far transcribed (`listening`,
`hearing`), so a turn's transcript is ready soon after it ends. A bad message gets an
`error` event and the socket stays open; bad credentials get an `error` then close 1008.

Every turn (speech start, commit, response.create) reads the key from the database again,
with the team membership and login of a playground user: a revoked or expired key, a
member who left, a user who logged out end the session with an `error` and close 1008.
Revoking a key also closes its sockets at once, in every worker, through the Channels
layer. Each turn is admitted against the key's limits before any engine runs; `turns`
says how each is billed. A model relayed to an upstream passes its events through
(`relay`).
"""

import asyncio
import contextlib
import logging
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import InterfaceError, OperationalError

from core.api_requests import new_request_id
from core.errors import OpenAIError, database_unavailable, invalid_api_key, server_error
from gateway.catalog import catalog
from gateway.lifecycle import MeteredCall
from gateway.realtime import protocol
from gateway.realtime.audio_buffer import AudioBuffer, InputAudio
from gateway.realtime.auth import authenticate, current_key
from gateway.realtime.hearing import UserTurn
from gateway.realtime.items import user_audio_item
from gateway.realtime.listening import Listening
from gateway.realtime.protocol import RealtimeError, new_id
from gateway.realtime.relay import Relay, relayed
from gateway.realtime.responses import Response
from gateway.realtime.revocation import key_group
from gateway.realtime.session import Session
from gateway.realtime.turns import Conversation, transcription_model, voice_chat_model
from gateway.realtime.vad import SpeechStarted

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


def _query(scope) -> dict[str, str]:
    query = parse_qs(scope.get("query_string", b"").decode())
    return {name: values[0] for name, values in query.items()}


class RealtimeConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept(_subprotocol(self.scope.get("subprotocols", [])))
        self.response: Response | None = None
        self.buffer = AudioBuffer()
        self.group: str | None = None
        self.ended_by: OpenAIError | None = None  # the credentials went away: closing
        self.listening = Listening()
        self.hearing: asyncio.Task | None = None  # the last committed turn being heard
        self.tasks: set[asyncio.Task] = set()
        try:
            self.api_key, self.credential = await authenticate(self.scope)
            query = _query(self.scope)
            minted = self.scope.get("minted_session") or {}
            if query.get("intent") == "transcription" or minted.get("type") == "transcription":
                await self._open_transcription(query.get("model"), minted)
                return
            self.model = query.get("model") or minted.get("model") or DEFAULT_MODEL
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
        # entry.id: the model asked for, or the successor serving a retired one (no header
        # can say so on a socket; session.created names what serves, as OpenAI does).
        self.session = Session.opened(entry.id)
        if minted:  # checked when the client secret was minted
            minted = {name: value for name, value in minted.items() if name != "model"}
            try:
                self.session = self.session.updated(minted, (self.model,), provider.voices())
            except RealtimeError as exc:  # another ?model= without the minted voice
                await self.send_event("error", error=protocol.client_error_body(exc, None))
        await self._session_changed("session.created")

    async def _open_transcription(self, model: str | None, minted: dict) -> None:
        """A transcription session: `?model=` may name its transcription model."""
        if model is not None and catalog().get(model).kind != "transcription":
            model = None  # a conversation model's name: the default transcriber serves
        self.session = Session.transcribing(model)
        if minted:
            self.session = self.session.updated(minted, (), ())
        self.model = self.session.transcription_model
        entry, provider = transcription_model(self.model)
        self.conversation = Conversation(entry, provider, self.send_event, speaks=False)
        await self._join_key_group()
        await self._session_changed("session.created")

    async def _session_changed(self, event_type: str) -> None:
        """Apply the session's input settings (format, turn detection), then say so."""
        self.input_audio = InputAudio(self.session.input_format)
        if self.listening.settings != self.session.turn_detection:
            await self._drop_turn()
            self.listening = Listening(self.session.turn_detection, self.buffer.end_ms)
        if not self.conversation.speaks:  # the transcription model bills its turns
            model = self.session.transcription_model
            self.conversation.entry, self.conversation.provider = transcription_model(model)
        await self.send_event(event_type, session=self.session.fields)

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
        await self._drop_turn(bill_heard=True)
        for task in list(getattr(self, "tasks", ())):
            task.cancel()
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

    def _spawn(self, work) -> None:
        """Run `work` beside the event loop of the socket (a turn being heard and answered
        must not stop the audio still arriving); its errors become error events."""

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self.send_event("error", error=_error_event(exc, "turn", None))

        task = asyncio.ensure_future(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

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
        update = event.get("session")
        if self._becomes_transcription(update):
            await self._become_transcription(update)
            return
        entry, provider = self.conversation.entry, self.conversation.provider
        models = (self.model, entry.id)
        voices = provider.voices() if self.conversation.speaks else ()
        self.session = self.session.updated(update, models, voices)
        await self._session_changed("session.updated")

    def _becomes_transcription(self, update) -> bool:
        """A conversation not yet begun may turn into a transcription session."""
        return (
            isinstance(update, dict)
            and update.get("type") == "transcription"
            and self.conversation.speaks
            and not len(self.conversation.items)
            and not self._responding()
        )

    async def _become_transcription(self, update: dict) -> None:
        session = Session.transcribing().updated(update, (), ())
        model = session.transcription_model
        entry, provider = transcription_model(model)
        await self._drop_turn()
        self.session, self.model = session, model
        self.conversation = Conversation(entry, provider, self.send_event, speaks=False)
        await self._session_changed("session.updated")

    # --- input audio and turn detection -----------------------------------------------

    async def on_input_audio_buffer_append(self, event: dict, event_id: str | None) -> None:
        pcm = self.input_audio.pcm(event.get("audio"))
        self.buffer.append(pcm)
        if self.listening.on:
            await self._listen(pcm)

    async def _listen(self, pcm: bytes) -> None:
        listening = self.listening
        for heard in listening.feed(pcm):
            if isinstance(heard, SpeechStarted):
                await self._speech_started(heard.audio_start_ms)
            else:
                await self._speech_stopped(heard.audio_end_ms, heard.speech_end_ms)
        if listening.turn is not None:
            self._hear_pause(listening.turn)
        elif not listening.detector.speaking:
            self.buffer.keep_from(self.buffer.end_ms - listening.settings.prefix_padding_ms)
            if listening.idle_expired(self.buffer.end_ms, self._responding()):
                await self._idle_timeout()

    def _hear_pause(self, turn: UserTurn) -> None:
        """At a pause, transcribe what was said since the last cut; once heard, if the
        speaker is still silent, reply early. Speaking on drops that reply."""
        listening, conversation = self.listening, self.conversation
        piece = listening.cut_at_pause(self.buffer)
        if piece is not None and listening.settings.create_response and conversation.speaks:
            piece.add_done_callback(lambda _: self._reply_early(turn))
        early = conversation.early
        if early is not None and early.item_id == turn.item_id and not listening.silent_since_cut():
            conversation.drop_early()

    def _reply_early(self, turn: UserTurn) -> None:
        listening = self.listening
        if turn is not listening.turn or not listening.silent_since_cut() or self.ended_by:
            return
        if self._responding() or (self.hearing is not None and not self.hearing.done()):
            return  # the reply would read turns not yet heard, or wait for this one's end
        transcript = turn.heard_so_far()
        if transcript:
            # A plan refused now (a bad voice, say) is refused again, to the client, when
            # the turn ends and the response is asked for.
            with contextlib.suppress(RealtimeError, OpenAIError):
                self.conversation.reply_early(turn.item_id, transcript, self.session)

    async def _speech_started(self, audio_start_ms: int) -> None:
        listening = self.listening
        listening.speech_started()
        start_ms = max(self.buffer.start_ms, audio_start_ms)  # the prefix padding included
        self.buffer.keep_from(start_ms)
        await self.send_event(
            "input_audio_buffer.speech_started",
            audio_start_ms=audio_start_ms,
            item_id=listening.item_id,
        )
        if listening.settings.interrupt_response and self._responding():
            await self.response.stop(reason="turn_detected")  # barge-in
        if not await self._still_allowed(None):
            return
        # Admitted now, since its pieces are transcribed while it is spoken.
        call = self._metered_call()
        try:
            await call.admit(self.conversation.heard_audio(1.0))
        except OpenAIError as exc:
            await self.send_event("error", error=protocol.error_body(exc))
            return
        turn = self.conversation.new_turn(listening.item_id, start_ms, self.session)
        listening.begin(turn, call)

    async def _speech_stopped(self, audio_end_ms: int, speech_end_ms: int) -> None:
        listening = self.listening
        await self.send_event(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=audio_end_ms,
            item_id=listening.item_id,
        )
        turn, call = listening.end()
        if turn is None:  # refused when it began: its audio goes
            self.buffer.take(audio_end_ms)
            return
        turn.finish(self.buffer.audio_between(turn.cut_ms, audio_end_ms), speech_end_ms)
        self.buffer.take(audio_end_ms)
        await self._commit(turn, call, respond=listening.settings.create_response)

    async def _commit(self, turn: UserTurn, call: MeteredCall, respond: bool) -> asyncio.Task:
        """Commit a turn (its whole length must fit the key's budget) and hear it beside
        the socket's loop (the audio still arriving is not held up); maybe answer it."""
        try:
            await call.cover(self.conversation.heard_audio(turn.seconds))
        except OpenAIError:
            turn.abandon()
            await call.finish(429)
            raise
        item = await self.conversation.committed(turn)
        # In order: a turn is heard after the ones committed before it.
        self.hearing = asyncio.ensure_future(self._hear(turn, item, call, after=self.hearing))
        if respond and self.conversation.speaks:
            self._spawn(self._answer(self.hearing))
        return self.hearing

    async def _hear(self, turn: UserTurn, item, call: MeteredCall, after) -> bool:
        if after is not None:
            await asyncio.gather(after, return_exceptions=True)
        try:
            return await self.conversation.hear(turn, item, call)
        except Exception as exc:
            await self.send_event("error", error=_error_event(exc, "turn", None))
            return False

    async def _answer(self, hearing: asyncio.Task) -> None:
        """Answer a turn found by VAD once it is heard (after any reply still speaking,
        when the user spoke without interrupting it)."""
        if not await hearing:
            return
        if self._responding():
            await asyncio.gather(self.response.task, return_exceptions=True)
        await self._respond(None, None)

    async def _idle_timeout(self) -> None:
        """No speech for idle_timeout_ms after a response: say so and answer again (the
        silence is an empty user turn, not billed)."""
        listening = self.listening
        start_ms, end_ms = listening.idle_since, self.buffer.end_ms
        listening.idle_since = None
        item = user_audio_item(new_id("item"), "", self.buffer.take())
        await self.send_event(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=start_ms,
            audio_end_ms=end_ms,
            item_id=item.id,
        )
        previous = self.conversation.items.add(item)
        await self.send_event(
            "input_audio_buffer.committed", previous_item_id=previous, item_id=item.id
        )
        await self.send_event(
            "conversation.item.added", previous_item_id=previous, item=item.shown()
        )
        await self.send_event("conversation.item.done", item=item.shown())
        if listening.settings.create_response and self.conversation.speaks:
            self._spawn(self._respond(None, None))

    async def _drop_turn(self, bill_heard: bool = False) -> None:
        """Give up the turn being spoken (the session changed or ended); what of it was
        heard is billed when the client left mid-turn."""
        if getattr(self, "conversation", None) is not None:
            self.conversation.drop_early()  # it answers this turn, or one no one will answer
        turn, call = self.listening.end()
        if turn is None:
            return
        turn.abandon()
        if bill_heard and turn.audio:
            call.metered = self.conversation.heard_audio(turn.seconds)
        await call.finish(200 if bill_heard and turn.audio else 499)

    async def on_input_audio_buffer_clear(self, event: dict, event_id: str | None) -> None:
        await self._drop_turn()
        self.buffer.clear()
        await self.send_event("input_audio_buffer.cleared")

    async def on_input_audio_buffer_commit(self, event: dict, event_id: str | None) -> None:
        """A turn committed by the client: heard before the next event is read."""
        self.buffer.check_committable()
        if not await self._still_allowed(event_id):
            return
        turn, call = self.listening.end()
        if turn is None:
            call = self._metered_call()
            await call.admit(self.conversation.heard_audio(self.buffer.seconds))
            turn = self.conversation.new_turn(new_id("item"), self.buffer.start_ms, self.session)
        turn.finish(self.buffer.audio_between(turn.cut_ms, self.buffer.end_ms))
        self.buffer.clear()
        await self._commit(turn, call, respond=False)
        await self._heard()  # push-to-talk: heard before the next event is read

    # --- responses --------------------------------------------------------------------

    async def on_response_create(self, event: dict, event_id: str | None) -> None:
        await self._respond(event.get("response"), event_id)

    async def _heard(self) -> None:
        """Wait until every committed turn is heard: a response reads their transcripts."""
        if self.hearing is not None:
            await asyncio.gather(asyncio.shield(self.hearing), return_exceptions=True)

    async def _respond(self, options, event_id: str | None) -> None:
        await self._heard()
        if self._responding():
            raise RealtimeError(
                "Conversation already has an active response in progress.",
                "conversation_already_has_active_response",
            )
        response_plan = self.conversation.plan(options, self.session)
        if await self._still_allowed(event_id):
            call = self._metered_call()
            self.response = await self.conversation.respond(response_plan, call)
            self.response.task.add_done_callback(self._response_ended)

    def _response_ended(self, task: asyncio.Task) -> None:
        self.listening.idle_since = self.buffer.end_ms  # idle_timeout_ms counts from here

    async def on_response_cancel(self, event: dict, event_id: str | None) -> None:
        if not self._responding():
            raise RealtimeError(
                "Cancellation failed: no active response found.", "response_cancel_not_active"
            )
        await self.response.stop()

    # --- conversation items -----------------------------------------------------------

    async def on_conversation_item_create(self, event: dict, event_id: str | None) -> None:
        if await self._still_allowed(event_id):
            await self.conversation.create_item(event, self._metered_call, self.session)

    async def on_conversation_item_delete(self, event: dict, event_id: str | None) -> None:
        item_id = event.get("item_id")
        self.conversation.items.delete(item_id)
        await self.send_event("conversation.item.deleted", item_id=item_id)

    async def on_conversation_item_retrieve(self, event: dict, event_id: str | None) -> None:
        item = self.conversation.items.get(event.get("item_id"))
        await self.send_event("conversation.item.retrieved", item=item.shown(with_audio=True))

    async def on_conversation_item_truncate(self, event: dict, event_id: str | None) -> None:
        item_id, content_index = event.get("item_id"), event.get("content_index", 0)
        audio_end_ms = event.get("audio_end_ms")
        self.conversation.items.truncate(item_id, content_index, audio_end_ms)
        await self.send_event(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )
