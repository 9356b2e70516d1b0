"""The socket's turns: hearing the user, and answering. Each is billed.

Each user turn (a committed buffer, or a client's audio item) is a ledger row of its own,
the audio heard: in a conversation its seconds and audio tokens at the model's audio
input price, in a transcription session its seconds at the transcription model's price.
It is admitted before the transcriber runs (with server VAD, when the speech starts, since
its pieces are transcribed while it is spoken), and its
`conversation.item.input_audio_transcription.completed` event carries that usage and cost.
Each response is another row (text in, text and audio out; the transcript it reads is not
billed again), also when it is cancelled or the client leaves; its `response.done` usage
and cost are that row's. Both go through `MeteredCall`.
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings

from core.errors import OpenAIError, invalid_param, server_error
from gateway.catalog import ModelEntry, catalog
from gateway.chat.conversation import AssistantReply
from gateway.lifecycle import MeteredCall
from gateway.pricing import audio_tokens, audio_tokens_per_second
from gateway.providers import provider_for
from gateway.providers.base import ChatJob, Heard, TextMessage, Transcriber, VoiceChat
from gateway.realtime import protocol
from gateway.realtime.early import EarlyReply
from gateway.realtime.hearing import UserTurn, joined, transcribe_pcm, transcriber_for
from gateway.realtime.items import Item, Items, client_item, user_audio_item
from gateway.realtime.protocol import RealtimeError, Send
from gateway.realtime.relay import relayed
from gateway.realtime.responses import Response, ResponsePlan, messages_for, plan
from gateway.realtime.session import Session
from usage.ledger import Metered

logger = logging.getLogger(__name__)


def voice_chat_model(name: str) -> tuple[ModelEntry, VoiceChat | None]:
    """The catalog entry and engine of a model that hears and speaks, or OpenAI's 400.

    An upstream's realtime model (`options.realtime = true`) has no engine here (None):
    its sessions are relayed to the upstream (`gateway.realtime.relay`)."""
    entry = catalog().resolve(name, "chat")
    if relayed(entry):
        return entry, None
    provider = provider_for(entry)
    hears_and_speaks = entry.accepts("audio") and entry.produces("audio")
    # Realtime runs the cascade here; other upstream audio models are chat-only.
    if not hears_and_speaks or not isinstance(provider, VoiceChat):
        raise invalid_param(
            f"The model `{name}` does not support realtime audio "
            "(it needs audio input and output).",
            param="model",
            code="unsupported_value",
        )
    return entry, provider


def transcription_model(name: str) -> tuple[ModelEntry, Transcriber]:
    """The entry and engine of a transcription session's model, or OpenAI's 400."""
    entry = catalog().resolve(name, "transcription")
    provider = provider_for(entry)
    if not isinstance(provider, Transcriber):
        raise invalid_param(f"The model `{name}` cannot transcribe.", param="model")
    return entry, provider


@dataclass
class Conversation:
    """What a socket's turns share: the model, the items, what is heard but unanswered.

    `provider` is the cascade (a conversation) or the transcriber (a transcription session,
    `speaks` False)."""

    entry: ModelEntry
    provider: VoiceChat | Transcriber
    send: Send
    speaks: bool = True
    items: Items = field(default_factory=Items)
    pending_heard: list[Heard] = field(default_factory=list)
    early: EarlyReply | None = None  # the reply to the turn still being spoken, started

    # --- hearing ----------------------------------------------------------------------

    def heard_audio(self, seconds: float) -> Metered:
        """What hearing `seconds` of audio is billed: its seconds, and in a conversation
        audio tokens by the catalog's rule."""
        if not self.speaks:
            return Metered(audio_seconds_in=round(seconds, 3))
        rate = audio_tokens_per_second(self.entry)
        return Metered(
            audio_seconds_in=round(seconds, 3), audio_tokens_in=audio_tokens(seconds, rate)
        )

    def transcriber(self, session: Session) -> Transcriber:
        fallback = self.provider if not self.speaks else self.provider.transcriber()
        return transcriber_for(session.input.get("transcription"), fallback)

    def new_turn(self, item_id: str, start_ms: int, session: Session) -> UserTurn:
        options = session.input.get("transcription")
        return UserTurn(item_id, start_ms, self.transcriber(session), options)

    async def committed(self, turn: UserTurn) -> Item | None:
        """Announce a committed turn: input_audio_buffer.committed, and (in a
        conversation) its item, whose transcript follows."""
        previous = self.items.last_id
        await self.send(
            "input_audio_buffer.committed", previous_item_id=previous, item_id=turn.item_id
        )
        if not self.speaks:
            return None
        item = user_audio_item(turn.item_id, None, turn.audio)
        previous = self.items.add(item)
        await self.send("conversation.item.added", previous_item_id=previous, item=item.shown())
        return item

    async def hear(self, turn: UserTurn, item: Item | None, call: MeteredCall) -> bool:
        """Transcribe the turn's pieces (most already done) and write its ledger row."""
        heard_audio = self.heard_audio(turn.seconds)
        status, failure = 500, server_error()
        try:
            texts = await turn.texts()
            status, call.metered = 200, heard_audio
        except OpenAIError as exc:
            status, failure = exc.status, exc
        except Exception:  # a broken engine must not kill the socket
            logger.exception("realtime input transcription failed")
        finally:
            await call.finish(status)
        if status != 200:
            await self._failed(turn.item_id, failure, item)
            return False
        for text in texts:
            if text:
                await self.send(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=turn.item_id,
                    content_index=0,
                    delta=text + " ",
                )
        transcript = joined(texts)
        tokens = heard_audio.audio_tokens_in if self.speaks else None
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            item_id=turn.item_id,
            content_index=0,
            transcript=transcript,
            usage=protocol.transcription_usage(tokens, turn.seconds, call.charged),
        )
        if item is not None:
            item.content[0]["transcript"] = transcript
            self.pending_heard.append(Heard(text=transcript, seconds=turn.seconds))
            await self.send("conversation.item.done", item=item.shown())
        return True

    async def _failed(self, item_id: str, failure: OpenAIError, item: Item | None) -> None:
        await self.send(
            "conversation.item.input_audio_transcription.failed",
            item_id=item_id,
            content_index=0,
            error=protocol.transcription_error(failure),
        )
        if item is not None:
            await self.send("conversation.item.done", item=item.shown())

    # --- items the client adds ----------------------------------------------------------

    async def create_item(self, event: dict, call_for, session: Session) -> None:
        """conversation.item.create: a text item at once; an audio one once heard."""
        if not self.speaks:
            raise RealtimeError(
                "A transcription session has no conversation.", "invalid_value", "type"
            )
        item = client_item(event.get("item"))
        previous_id = event.get("previous_item_id")
        if previous_id is not None and not isinstance(previous_id, str):
            raise protocol.invalid_type("previous_item_id", "a string", previous_id)
        if previous_id not in (None, "root"):
            self.items.get(previous_id)  # it must exist before anything is billed
        if item.audio:
            await self._hear_item(item, call_for(), session)
        previous = self.items.add(item, previous_id)
        await self.send("conversation.item.added", previous_item_id=previous, item=item.shown())
        await self.send("conversation.item.done", item=item.shown())

    async def _hear_item(self, item: Item, call: MeteredCall, session: Session) -> None:
        """Transcribe an audio item's audio (billed as heard audio) into its transcript."""
        seconds = len(item.audio) / 2 / 24_000
        heard_audio = self.heard_audio(seconds)
        await call.admit(heard_audio)
        status = 500
        try:
            options = session.input.get("transcription")
            text = await transcribe_pcm(item.audio, self.transcriber(session), options)
            status, call.metered = 200, heard_audio
        except OpenAIError as exc:
            status = exc.status
            raise
        finally:
            await call.finish(status)
        for part in item.content:
            if part["type"] == "input_audio":
                part["transcript"] = text
        self.pending_heard.append(Heard(text=text, seconds=seconds))

    # --- responding ---------------------------------------------------------------------

    def plan(self, options, session: Session) -> ResponsePlan:
        """The response a response.create asks for, if there is anything to answer."""
        if not self.speaks:
            raise RealtimeError(
                "A transcription session does not respond; it only transcribes.",
                "invalid_value",
                "type",
            )
        response_plan = plan(options, session, self.items, self.provider.voices())
        if not len(self.items) and response_plan.input_items is None:
            raise RealtimeError(
                "Nothing to respond to: commit some input audio first.",
                "conversation_empty",
            )
        return response_plan

    def _reply(
        self, response_plan: ResponsePlan, messages: list[TextMessage], heard: list[Heard]
    ) -> AssistantReply:
        return AssistantReply(
            entry=self.entry,
            provider=self.provider,
            job=ChatJob(
                messages=messages,
                max_tokens=_max_tokens(response_plan),
                temperature=response_plan.temperature,
            ),
            heard=heard,
            voice=response_plan.voice if response_plan.speaking else None,
        )

    def reply_early(self, item_id: str, transcript: str, session: Session) -> None:
        """Start the reply that the turn being spoken (`item_id`) gets if it ends as
        `transcript` (see `gateway.realtime.early`)."""
        self.drop_early()
        response_plan = plan(None, session, self.items, self.provider.voices())
        messages = [*messages_for(response_plan, self.items), TextMessage("user", transcript)]
        self.early = EarlyReply(self._reply(response_plan, messages, []), item_id)

    def drop_early(self) -> None:
        if self.early is not None:
            self.early.stop()
            self.early = None

    async def respond(self, response_plan: ResponsePlan, call: MeteredCall) -> Response:
        """Admit a response of at most its token limit, and start it (taking the reply
        started early, if it is this one)."""
        await call.admit(Metered(text_tokens_out=_max_tokens(response_plan)))
        heard = []
        if response_plan.in_conversation:
            # The transcripts of these are not billed as text: the audio was, when heard.
            heard, self.pending_heard = self.pending_heard, []
        reply = self._reply(response_plan, messages_for(response_plan, self.items), heard)
        events = reply.events
        early, self.early = self.early, None
        if early is not None and early.answers(reply):
            reply, events = early.taken_by(reply), early.events
        elif early is not None:
            early.stop()
        response = Response(response_plan, reply, call, self.items, self.send, events)
        response.start()
        return response


def _max_tokens(response_plan: ResponsePlan) -> int:
    limit = response_plan.limit
    return settings.AROUTER_CHAT_MAX_TOKENS if limit == "inf" else limit
