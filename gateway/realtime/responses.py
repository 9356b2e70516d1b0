"""One response of the realtime socket: planned from response.create, run as a task, billed.

`plan` reads a response.create's `response` object (per-response `instructions`,
`output_modalities`, `max_output_tokens`, `conversation: "none"` for out-of-band
responses with their own `input`, `metadata`, the voice and output format) over the
session's defaults. `Response` runs it: the text model writes, each sentence is spoken,
and the events stream as they exist. A response can be cancelled (response.cancel, or the
user speaking over it: barge-in); it then closes its audio and item as `incomplete` and
ends `cancelled`, billed for what it generated.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

import pybase64

from core.errors import OpenAIError
from gateway.audio.g711 import G711Encoder
from gateway.chat.conversation import AssistantReply
from gateway.chat.token_usage import ChatUsage
from gateway.lifecycle import MeteredCall
from gateway.providers.base import Spoken, TextMessage
from gateway.realtime import protocol
from gateway.realtime.audio_buffer import ms_of
from gateway.realtime.items import (
    Item,
    Items,
    SpokenPiece,
    assistant_item,
    client_item,
    finish_assistant_item,
)
from gateway.realtime.protocol import RealtimeError, Send, invalid_type, new_id
from gateway.realtime.session import (
    FORMAT_OBJECTS,
    MODALITIES,
    Session,
    audio_format,
    output_token_limit,
)

logger = logging.getLogger(__name__)

_RESPONSE_FIELDS = (
    "instructions",
    "output_modalities",
    "modalities",
    "max_output_tokens",
    "max_response_output_tokens",
    "conversation",
    "input",
    "metadata",
    "audio",
    "voice",
    "output_audio_format",
    "temperature",
    "tools",
    "tool_choice",
    "prompt",
)


@dataclass
class ResponsePlan:
    """What one response is asked to be."""

    instructions: str
    modalities: list[str]
    limit: int | str
    voice: str
    output_format: str
    temperature: float
    in_conversation: bool = True
    input_items: list[Item] | None = None  # out-of-band: what it reads instead
    metadata: dict | None = None

    @property
    def speaking(self) -> bool:
        return self.modalities == ["audio"]


def _metadata(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_type("response.metadata", "an object", value)
    if len(value) > 16 or not all(
        isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
        for k, v in value.items()
    ):
        raise RealtimeError(
            "`metadata` holds at most 16 string values (keys ≤ 64, values ≤ 512 characters).",
            "invalid_value",
            "response.metadata",
        )
    return value


def _input_items(value, items: Items) -> list[Item] | None:
    """An out-of-band response's own input: item references and inline items."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid_type("response.input", "an array", value)
    chosen = []
    for index, raw in enumerate(value):
        if isinstance(raw, dict) and raw.get("type") == "item_reference":
            chosen.append(items.get(raw.get("id")))
        else:
            try:
                chosen.append(client_item(raw))
            except RealtimeError as exc:
                exc.param = f"response.input[{index}]" + (exc.param or "")[len("item") :]
                raise
    return chosen


def _modalities(options: dict, default: list[str]) -> list[str]:
    value = options.get("output_modalities", options.get("modalities"))
    if value is None:
        return default
    if not isinstance(value, list) or value not in MODALITIES:
        raise RealtimeError(
            "`output_modalities` must be ['audio'] or ['text'].",
            "invalid_value",
            "response.output_modalities",
        )
    return ["text"] if value == ["text"] else ["audio"]


def _voice_and_format(options: dict, session: Session, voices: Collection[str]) -> tuple[str, str]:
    output = session.fields["audio"]["output"]
    voice, fmt = output["voice"], session.output_format
    audio = options.get("audio")
    if audio is not None:
        if not isinstance(audio, dict) or not isinstance(audio.get("output", {}), dict):
            raise invalid_type("response.audio", "an object", audio)
        requested = audio.get("output", {})
        if requested.get("format") is not None:
            fmt = audio_format(requested["format"], "response.audio.output.format")
        voice = requested.get("voice", voice)
    if options.get("output_audio_format") is not None:
        fmt = audio_format(options["output_audio_format"], "response.output_audio_format")
    voice = options.get("voice", voice)
    if voice not in voices:
        raise RealtimeError(
            f"Invalid value: '{voice}'. Supported voices are: "
            + ", ".join(f"'{v}'" for v in voices)
            + ".",
            "invalid_value",
            "response.audio.output.voice",
        )
    return voice, fmt


def plan(options, session: Session, items: Items, voices: Collection[str]) -> ResponsePlan:
    """The response a response.create asks for, or a RealtimeError naming the bad field."""
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise invalid_type("response", "an object", options)
    for name in options:
        if name not in _RESPONSE_FIELDS:
            raise RealtimeError(
                f"Unknown parameter: 'response.{name}'.", "unknown_parameter", f"response.{name}"
            )
    if options.get("tools"):
        raise RealtimeError("Tools are not supported here.", "invalid_value", "response.tools")
    instructions = options.get("instructions", session.fields["instructions"])
    if not isinstance(instructions, str):
        raise invalid_type("response.instructions", "a string", instructions)
    conversation = options.get("conversation", "auto")
    if conversation not in ("auto", "none"):
        raise RealtimeError(
            "`conversation` must be 'auto' or 'none'.", "invalid_value", "response.conversation"
        )
    limit = session.response_limit(options)
    if "max_response_output_tokens" in options:
        limit = output_token_limit(
            options["max_response_output_tokens"], "response.max_response_output_tokens"
        )
    temperature = options.get("temperature", session.temperature)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise invalid_type("response.temperature", "a number", temperature)
    voice, fmt = _voice_and_format(options, session, voices)
    return ResponsePlan(
        instructions=instructions,
        modalities=_modalities(options, session.fields["output_modalities"]),
        limit=limit,
        voice=voice,
        output_format=fmt,
        temperature=float(temperature),
        in_conversation=conversation == "auto",
        input_items=_input_items(options.get("input"), items),
        metadata=_metadata(options.get("metadata")),
    )


class AudioOut:
    """Spoken pcm16 in the response's output format (G.711 encoded for telephony)."""

    def __init__(self, fmt: str) -> None:
        law = {"g711_ulaw": "ulaw", "g711_alaw": "alaw"}.get(fmt)
        self._g711 = G711Encoder(law) if law else None

    def encoded(self, pcm: bytes) -> str:
        data = pcm if self._g711 is None else self._g711.encode(pcm)
        return pybase64.b64encode(data).decode("ascii")

    def flushed(self) -> str | None:
        """What the resampler still holds at the end of the audio (G.711 only)."""
        data = self._g711.flush() if self._g711 is not None else b""
        return pybase64.b64encode(data).decode("ascii") if data else None


class Response:
    """One admitted response: runs as a task, so it can be stopped mid-way."""

    def __init__(
        self,
        plan: ResponsePlan,
        reply: AssistantReply,
        call: MeteredCall,
        items: Items,
        send: Send,
        events: Callable[[], AsyncIterator] | None = None,
    ) -> None:
        self.plan, self.reply, self.call, self.items, self.send = plan, reply, call, items, send
        self.events = events or reply.events  # the reply's events (held ones, if early)
        self.speaking = plan.speaking
        response_id = new_id("resp")
        self.item = assistant_item(new_id("item"))
        self.body = protocol.response_object(
            response_id,
            plan.modalities,
            plan.limit,
            plan.voice,
            FORMAT_OBJECTS[plan.output_format],
        )
        self.body["metadata"] = plan.metadata
        if plan.in_conversation:
            self.body["conversation_id"] = items.id
        self.where = {"response_id": response_id, "item_id": self.item.id, "output_index": 0}
        self.audio_out = AudioOut(plan.output_format)
        self.status, self.status_details, self.status_code = "completed", None, 200
        self.cancel_reason = "client_cancelled"
        self.task: asyncio.Task | None = None
        # Why the session ended, if it did mid-response (the response then failed).
        self.ended_by: OpenAIError | None = None

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.run())

    async def stop(self, ended_by: OpenAIError | None = None, reason: str = "client_cancelled"):
        """Cancel the response: the client asked, spoke over it, left, or lost its key."""
        if self.active:
            self.ended_by, self.cancel_reason = ended_by, reason
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def run(self) -> None:
        try:
            # As for HTTP streams: a worker that dies mid-turn leaves the turn in the
            # ledger, marked interrupted (finish() below completes the row).
            await self.call.mark_started()
            await self._open()
            await self._stream()
            if self.reply.finish_reason == "length":
                self.status = "incomplete"
                self.status_details = {"type": "incomplete", "reason": "max_output_tokens"}
        except asyncio.CancelledError:
            self._cancelled()
        except Exception as exc:  # a broken engine must not kill the socket
            logger.exception("realtime response failed")
            self.status, self.status_code = "failed", 500
            self.status_details = protocol.failure_details(exc)
        finally:
            usage = await self._bill()
        await self._close_content()
        await self._done(usage)

    async def _open(self) -> None:
        await self.send("response.created", response=self.body)
        if self.plan.in_conversation:
            previous = self.items.add(self.item)
            await self.send(
                "conversation.item.added", previous_item_id=previous, item=self.item.shown()
            )
        await self.send(
            "response.output_item.added",
            response_id=self.where["response_id"],
            output_index=0,
            item=self.item.shown(),
        )
        part = protocol.content_part(self.speaking)
        await self.send("response.content_part.added", **self.where, content_index=0, part=part)

    async def _stream(self) -> None:
        text_event = (
            "response.output_audio_transcript.delta"
            if self.speaking
            else "response.output_text.delta"
        )
        async with contextlib.aclosing(self.events()) as events:
            async for event in events:
                if isinstance(event, str):
                    await self.send(text_event, **self.where, content_index=0, delta=event)
                elif isinstance(event, Spoken):
                    await self._speak(event)

    async def _speak(self, spoken: Spoken) -> None:
        self.item.audio += spoken.pcm
        self.item.spoken.append(SpokenPiece(spoken.transcript, ms_of(len(self.item.audio))))
        await self.send(
            "response.output_audio.delta",
            **self.where,
            content_index=0,
            delta=self.audio_out.encoded(spoken.pcm),
        )

    def _cancelled(self) -> None:
        self.status = "cancelled"
        self.status_details = {"type": "cancelled", "reason": self.cancel_reason}
        if self.ended_by is not None:  # what was made until then is billed
            self.status = "failed"
            self.status_details = {"type": "failed", "error": protocol.error_body(self.ended_by)}

    async def _bill(self) -> ChatUsage:
        """Write the response's row: what it made, however it ended."""
        usage = await self.reply.usage()
        # The audio heard was billed with its commit (its own row): not again here.
        usage.audio_in, usage.audio_seconds_in = 0, 0.0
        usage.meter(self.call.metered)
        await self.call.finish(self.status_code)
        return usage

    async def _close_content(self) -> None:
        """The content's closing events, also for a response cut short (its audio stops
        here: nothing more of it is sent)."""
        text = self.reply.text
        if self.speaking:
            if (rest := self.audio_out.flushed()) is not None:
                await self.send(
                    "response.output_audio.delta", **self.where, content_index=0, delta=rest
                )
            await self.send("response.output_audio.done", **self.where, content_index=0)
            await self.send(
                "response.output_audio_transcript.done",
                **self.where,
                content_index=0,
                transcript=text,
            )
        else:
            await self.send("response.output_text.done", **self.where, content_index=0, text=text)
        part = protocol.content_part(self.speaking, text)
        await self.send("response.content_part.done", **self.where, content_index=0, part=part)

    async def _done(self, usage: ChatUsage) -> None:
        finish_assistant_item(
            self.item, self.speaking, self.reply.text, completed=self.status == "completed"
        )
        shown = self.item.shown()
        await self.send(
            "response.output_item.done",
            response_id=self.where["response_id"],
            output_index=0,
            item=shown,
        )
        if self.plan.in_conversation:
            await self.send("conversation.item.done", item=shown)
        cost = self.call.cost if self.status_code < 400 else 0.0
        self.body.update(
            status=self.status,
            status_details=self.status_details,
            output=[shown],
            usage=protocol.response_usage(usage, cost),
        )
        await self.send("response.done", response=self.body)


def messages_for(plan: ResponsePlan, items: Items) -> list[TextMessage]:
    """What the text model reads: the instructions, then the conversation (or, out of
    band, the response's own input)."""
    if plan.input_items is not None:
        messages = [TextMessage(role=i.role, text=i.text) for i in plan.input_items if i.text]
    else:
        messages = items.as_messages()
    if plan.instructions:
        messages.insert(0, TextMessage(role="system", text=plan.instructions))
    return messages
