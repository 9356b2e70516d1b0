"""The socket's turns: hearing a committed buffer, and answering it. Each is billed.

Each committed buffer is a ledger row of its own, the audio heard (seconds and audio
tokens at the model's audio input price), written whether or not a response follows; its
`conversation.item.input_audio_transcription.completed` event carries that usage and cost.
Each response is another row (text in, text and audio out; the transcript it reads is not
billed again), also when it is cancelled or the client leaves; its `response.done` usage
and cost are that row's. Both go through `MeteredCall`, admitted before any engine runs.
"""

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field

from django.conf import settings

from core.errors import OpenAIError, invalid_param, server_error
from gateway.catalog import ModelEntry, catalog
from gateway.chat.conversation import AssistantReply
from gateway.chat.token_usage import ChatUsage
from gateway.lifecycle import MeteredCall
from gateway.pricing import audio_tokens, audio_tokens_per_second
from gateway.providers import provider_for
from gateway.providers.base import ChatJob, Heard, Spoken, TextMessage, VoiceChat
from gateway.realtime import protocol
from gateway.realtime.audio_buffer import AudioBuffer, as_wav
from gateway.realtime.protocol import RealtimeError, Send, new_id
from gateway.realtime.relay import relayed
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


@dataclass
class Conversation:
    """What a socket's turns share: the model, what was said, what is heard but unanswered."""

    entry: ModelEntry
    provider: VoiceChat
    send: Send
    history: list[TextMessage] = field(default_factory=list)
    pending_heard: list[Heard] = field(default_factory=list)
    last_item_id: str | None = None

    def heard_audio(self, seconds: float) -> Metered:
        """What hearing `seconds` of audio is billed: its seconds, and audio tokens by the
        catalog's rule."""
        rate = audio_tokens_per_second(self.entry)
        return Metered(
            audio_seconds_in=round(seconds, 3), audio_tokens_in=audio_tokens(seconds, rate)
        )

    async def commit(self, buffer: AudioBuffer, call: MeteredCall) -> None:
        """Hear the buffer as a user item: committed, then transcribed (or failed)."""
        heard_audio = self.heard_audio(buffer.seconds)
        # Before Whisper runs: a key that may not, or cannot pay, gets no transcript (the
        # buffer stays, to retry or clear).
        await call.admit(heard_audio)
        pcm = buffer.take()
        item_id = new_id("item")
        previous, self.last_item_id = self.last_item_id, item_id
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        heard = await self._hear(pcm, call, heard_audio, item_id)
        if heard is None:
            return
        self.pending_heard.append(heard)
        self.history.append(TextMessage(role="user", text=heard.text))
        item = protocol.user_item(item_id, heard.text)
        await self.send("conversation.item.created", previous_item_id=previous, item=item)
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=heard.text,
            usage=protocol.transcription_usage(heard_audio.audio_tokens_in, call.charged),
        )

    async def _hear(
        self, pcm: bytes, call: MeteredCall, heard_audio: Metered, item_id: str
    ) -> Heard | None:
        """Transcribe a committed buffer and write its ledger row (billed when heard)."""
        status, failure = 500, server_error()
        try:
            heard = await self.provider.hear(as_wav(pcm), "wav", "audio")
            status, call.metered = 200, heard_audio
            return heard
        except OpenAIError as exc:
            status, failure = exc.status, exc
        except Exception:  # a broken engine must not kill the socket
            logger.exception("realtime input transcription failed")
        finally:
            await call.finish(status)
        await self.send(
            "conversation.item.input_audio_transcription.failed",
            item_id=item_id,
            content_index=0,
            error=protocol.transcription_error(failure),
        )
        return None

    def check_answerable(self) -> None:
        if not self.history:
            raise RealtimeError(
                "Nothing to respond to: commit some input audio first.",
                "conversation_empty",
            )

    async def respond(self, session: Session, limit: int | str, call: MeteredCall) -> "Response":
        """Admit a response of at most `limit` tokens, and start it."""
        max_tokens = settings.AROUTER_CHAT_MAX_TOKENS if limit == "inf" else limit
        await call.admit(Metered(text_tokens_out=max_tokens))
        response = Response(self, session, limit, self._turn(session, max_tokens), call)
        response.task = asyncio.ensure_future(response.run())
        return response

    def _turn(self, session: Session, max_tokens: int) -> AssistantReply:
        fields = session.fields
        messages = list(self.history)
        if fields["instructions"]:
            messages.insert(0, TextMessage(role="system", text=fields["instructions"]))
        heard, self.pending_heard = self.pending_heard, []
        speaking = fields["output_modalities"] == ["audio"]
        return AssistantReply(
            entry=self.entry,
            provider=self.provider,
            job=ChatJob(messages=messages, max_tokens=max_tokens, temperature=session.temperature),
            # The transcripts of these are not billed as text: the audio was, at commit.
            heard=heard,
            voice=fields["audio"]["output"]["voice"] if speaking else None,
        )


class Response:
    """One admitted response: runs as a task, so response.cancel can stop it mid-way."""

    def __init__(
        self,
        conversation: Conversation,
        session: Session,
        limit: int | str,
        turn: AssistantReply,
        call: MeteredCall,
    ) -> None:
        self.conversation, self.turn, self.call = conversation, turn, call
        self.send = conversation.send
        fields = session.fields
        self.speaking = fields["output_modalities"] == ["audio"]
        response_id, item_id = new_id("resp"), new_id("item")
        voice = fields["audio"]["output"]["voice"]
        self.body = protocol.response_object(response_id, fields["output_modalities"], limit, voice)
        self.item = protocol.assistant_item(item_id)
        self.where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        self.status, self.status_details, self.status_code = "completed", None, 200
        self.task: asyncio.Task | None = None
        # Why the session ended, if it did mid-response (the response then failed).
        self.ended_by: OpenAIError | None = None

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self, ended_by: OpenAIError | None = None) -> None:
        """Cancel the response (the client asked, left, or lost its credentials)."""
        if self.active:
            self.ended_by = ended_by
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def run(self) -> None:
        try:
            # As for HTTP streams: a worker that dies mid-turn leaves the turn in the
            # ledger, marked interrupted (finish() below completes the row).
            await self.call.mark_started()
            await self._open()
            await self._stream()
            await self._close_content()
        except asyncio.CancelledError:
            self._cancelled()
        except Exception as exc:  # a broken engine must not kill the socket
            logger.exception("realtime response failed")
            self.status, self.status_code = "failed", 500
            self.status_details = protocol.failure_details(exc)
        finally:
            usage = await self._bill()
        if self.turn.text:
            self.conversation.history.append(TextMessage(role="assistant", text=self.turn.text))
        await self._done(usage)

    async def _open(self) -> None:
        await self.send("response.created", response=self.body)
        await self.send(
            "response.output_item.added",
            response_id=self.where["response_id"],
            output_index=0,
            item=self.item,
        )
        part = protocol.content_part(self.speaking)
        await self.send("response.content_part.added", **self.where, content_index=0, part=part)

    async def _stream(self) -> None:
        text_event = (
            "response.output_audio_transcript.delta"
            if self.speaking
            else "response.output_text.delta"
        )
        async with contextlib.aclosing(self.turn.events()) as events:
            async for event in events:
                if isinstance(event, str):
                    await self.send(text_event, **self.where, content_index=0, delta=event)
                elif isinstance(event, Spoken):
                    await self.send(
                        "response.output_audio.delta",
                        **self.where,
                        content_index=0,
                        delta=base64.b64encode(event.pcm).decode("ascii"),
                    )

    async def _close_content(self) -> None:
        if self.turn.finish_reason == "length":
            self.status = "incomplete"
            self.status_details = {"type": "incomplete", "reason": "max_output_tokens"}
        text = self.turn.text
        if self.speaking:
            await self.send("response.output_audio.done", **self.where, content_index=0)
            await self.send(
                "response.output_audio_transcript.done",
                **self.where,
                content_index=0,
                transcript=text,
            )
        else:
            await self.send("response.output_text.done", **self.where, content_index=0, text=text)

    def _cancelled(self) -> None:
        self.status = "cancelled"
        self.status_details = {"type": "cancelled", "reason": "client_cancelled"}
        if self.ended_by is not None:  # what was made until then is billed
            self.status = "failed"
            self.status_details = {"type": "failed", "error": protocol.error_body(self.ended_by)}

    async def _bill(self) -> ChatUsage:
        """Write the response's row: what it made, however it ended."""
        usage = await self.turn.usage()
        # The audio heard was billed with its commit (its own row): not again here.
        usage.audio_in, usage.audio_seconds_in = 0, 0.0
        usage.meter(self.call.metered)
        await self.call.finish(self.status_code)
        return usage

    async def _done(self, usage: ChatUsage) -> None:
        """The closing events: the part and item (unless cancelled), then response.done."""
        text = self.turn.text
        completed = self.status == "completed"
        item = dict(self.item, status="completed" if completed else "incomplete")
        item["content"] = [protocol.output_content(self.speaking, text)]
        if self.status != "cancelled":
            part = protocol.content_part(self.speaking, text)
            await self.send("response.content_part.done", **self.where, content_index=0, part=part)
            await self.send(
                "response.output_item.done",
                response_id=self.where["response_id"],
                output_index=0,
                item=item,
            )
        cost = self.call.cost if self.status_code < 400 else 0.0
        self.body.update(
            status=self.status,
            status_details=self.status_details,
            output=[item],
            usage=protocol.response_usage(usage, cost),
        )
        await self.send("response.done", response=self.body)
