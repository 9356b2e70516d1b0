"""Replying early: the answer to a turn starts while the speaker's final pause still runs.

Server VAD ends a turn only after `silence_duration_ms` of silence, and the turn's last
piece is cut (and transcribed) at the start of that pause. Once it is heard, the reply it
would get is already known, so the text model and the synthesizer start on it then,
their output held back. When the turn does end, the response whose job is exactly the
one started (the same messages, limit, temperature and voice) takes the held output and
streams on from there; the user hears the answer up to a whole pause sooner.

A reply started early and not taken (the speaker went on, the session or the
conversation changed first) is stopped where it is. It is not billed: no client asked for
it, and none received any of it.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.chat.conversation import AssistantReply

_END = object()


class EarlyReply:
    """An `AssistantReply` already running, its events kept until a response takes them."""

    def __init__(self, reply: AssistantReply, item_id: str) -> None:
        self.reply = reply
        self.item_id = item_id  # the user's turn it answers
        self._held: asyncio.Queue = asyncio.Queue()
        self._pump = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            async with contextlib.aclosing(self.reply.events()) as events:
                async for event in events:
                    self._held.put_nowait(event)
        except Exception as exc:  # raised where the response reads it
            self._held.put_nowait(exc)
        finally:
            self._held.put_nowait(_END)

    def answers(self, reply: AssistantReply) -> bool:
        """Whether this is the reply `reply` would be: the same job, spoken alike."""
        return (self.reply.job, self.reply.voice) == (reply.job, reply.voice)

    def taken_by(self, reply: AssistantReply) -> AssistantReply:
        """This reply, for the response that would have run `reply` (whose billing context,
        the transcripts it reads, it keeps)."""
        self.reply.heard = reply.heard
        return self.reply

    async def events(self) -> AsyncIterator:
        """The reply's events: those held back, then the rest as they come."""
        try:
            while (event := await self._held.get()) is not _END:
                if isinstance(event, Exception):
                    raise event
                yield event
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop making the reply (the text model and synthesizer stop at their next step)."""
        self._pump.cancel()
