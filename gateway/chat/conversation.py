"""One chat turn from validated messages to a finished reply, shared by HTTP and websocket.

`prepare` turns request messages into what a text model reads (audio parts transcribed,
stored audio replies resolved to their transcripts); `AssistantReply` runs the model, speaking the
reply when asked, and keeps the running totals that usage and the ledger need, also when
the client leaves half way.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.catalog import ModelEntry
from gateway.chat import replies
from gateway.chat.request import AudioInput, Message
from gateway.chat.token_usage import ChatUsage
from gateway.pricing import audio_tokens, audio_tokens_per_second
from gateway.providers.base import ChatJob, ChatReply, Heard, Spoken, TextMessage


async def prepare(
    messages: list[Message], provider, team_id: int
) -> tuple[list[TextMessage], list[Heard]]:
    """The conversation as text, and each audio part as heard (in order)."""
    turns: list[TextMessage] = []
    heard: list[Heard] = []
    for message in messages:
        texts: list[str] = []
        if message.audio_id:
            stored = await replies.recall(message.audio_id, team_id, f"{message.param}.audio.id")
            texts.append(stored.transcript)
        for part in message.parts:
            if isinstance(part, AudioInput):
                result = await provider.hear(part.data, part.format, part.param)
                heard.append(result)
                texts.append(result.text)
            else:
                texts.append(part)
        turns.append(TextMessage(role=message.role, text=" ".join(t.strip() for t in texts if t)))
    return turns, heard


@dataclass
class AssistantReply:
    """The assistant's reply being made (by the text model, spoken when asked): run it
    with `events()`, read its totals at any point. `ChatReply` is what the text model
    returns once it has finished writing."""

    entry: ModelEntry
    provider: object
    job: ChatJob
    heard: list[Heard] = field(default_factory=list)
    voice: str | None = None  # speak the reply in this voice (audio output)
    text: str = ""
    spoken_seconds: float = 0.0
    reply: ChatReply | None = None

    async def events(self) -> AsyncIterator[str | Spoken | ChatReply]:
        if self.voice is not None:
            source = self.provider.converse(self.job, self.voice)
        else:
            source = self.provider.stream(self.job)
        # Closed explicitly, so a client that leaves stops the model and the synthesizer now.
        async with contextlib.aclosing(source):
            async for event in source:
                if isinstance(event, str):
                    self.text += event
                elif isinstance(event, Spoken):
                    self.spoken_seconds += event.seconds
                elif isinstance(event, ChatReply):
                    self.reply = event
                yield event

    @property
    def finish_reason(self) -> str:
        return self.reply.finish_reason if self.reply else "stop"

    async def usage(self) -> ChatUsage:
        """Usage so far: the whole turn once it finished, what was produced if cut short."""
        rate = audio_tokens_per_second(self.entry)
        heard_seconds = sum(h.seconds for h in self.heard)
        count = self.provider.count_tokens
        heard_text_tokens = 0
        for h in self.heard:
            heard_text_tokens += await asyncio.to_thread(count, h.text)
        if self.reply is not None:
            prompt_text = self.reply.prompt_tokens
            text_out = self.reply.completion_tokens
        else:
            prompt_text = await asyncio.to_thread(
                count, "\n".join(turn.text for turn in self.job.messages)
            )
            text_out = await asyncio.to_thread(count, self.text)
        return ChatUsage(
            text_in=max(0, prompt_text - heard_text_tokens),
            audio_in=audio_tokens(heard_seconds, rate),
            text_out=text_out,
            audio_out=audio_tokens(self.spoken_seconds, rate),
            audio_seconds_in=heard_seconds,
            audio_seconds_out=self.spoken_seconds,
        )
