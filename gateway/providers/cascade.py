"""Audio chat as a cascade: speech-to-text → a text chat model → text-to-speech.

A catalog entry with `provider = "cascade"` names its three stages: `target` is any chat
model of the catalog (the local llama, or an upstream OpenAI-compatible one), and
`options.transcriber` / `options.synthesizer` name a transcription and a speech model.
Each stage is whatever provider serves that entry, so any of them can move upstream by a
catalog change.

`options.system_prompt` (a short voice-assistant instruction) is what the text model reads
first, before the client's own system messages or realtime instructions: replies come out
short and plain enough to be spoken.

The reply is spoken sentence by sentence while the text model is still writing: a
sentence goes to the synthesizer the moment it is complete, so the first audio leaves long
before the text is finished.
"""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from core.errors import OpenAIError, invalid_param
from gateway.audio.sentences import Piece, SentenceSplitter
from gateway.catalog import ModelEntry, catalog
from gateway.providers.base import (
    AudioUpload,
    ChatJob,
    ChatModel,
    ChatReply,
    Heard,
    SpeechJob,
    SpeechMeter,
    Spoken,
    Synthesizer,
    TextMessage,
    Transcriber,
    TranscriptionJob,
)


class CascadeProvider:
    """Implements ChatModel (text in, text out) and the audio chat around it."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        options = entry.options
        self.transcriber_id = options.get("transcriber")
        self.synthesizer_id = options.get("synthesizer")
        self.system_prompt: str = options.get("system_prompt", "").strip()

    # --- the stages -------------------------------------------------------------------

    def _stage(self, model_id: str | None, kind: str, capability: type):
        from gateway.providers import provider_for

        if not model_id:
            raise OpenAIError(
                f"The model `{self.entry.id}` has no {kind} stage configured.", status=500
            )
        provider = provider_for(catalog().resolve(model_id, kind))
        if not isinstance(provider, capability):
            raise OpenAIError(f"`{model_id}` cannot serve {kind}.", status=500)
        return provider

    def text_model(self) -> ChatModel:
        return self._stage(self.entry.target, "chat", ChatModel)

    def transcriber(self) -> Transcriber:
        return self._stage(self.transcriber_id, "transcription", Transcriber)

    def synthesizer(self) -> Synthesizer:
        return self._stage(self.synthesizer_id, "speech", Synthesizer)

    def voices(self) -> dict[str, str]:
        return self.synthesizer().voices()

    # --- hearing ----------------------------------------------------------------------

    async def hear(self, data: bytes, fmt: str, param: str) -> Heard:
        """Transcribe one input_audio part; its errors name the part, not `file`."""
        job = TranscriptionJob(upload=AudioUpload(content=data, filename=f"input_audio.{fmt}"))
        try:
            transcript = await self.transcriber().transcribe(job)
        except OpenAIError as exc:
            if exc.status >= 500:
                raise
            raise invalid_param(
                f"Invalid value for '{param}': {exc.message}", param=param, code=exc.code
            ) from None
        return Heard(text=transcript.text.strip(), seconds=transcript.duration)

    # --- ChatModel: text only, delegated to the text model ----------------------------

    def instructed(self, job: ChatJob) -> ChatJob:
        """The job with the cascade's system prompt first. A client's leading system message
        is joined to it: one system turn costs fewer template tokens, and many chat
        templates read a system message only as the first turn."""
        if not self.system_prompt:
            return job
        messages = list(job.messages)
        merged = self.system_prompt
        if messages and messages[0].role == "system":
            client_system = messages.pop(0).text.strip()
            merged = f"{merged}\n\n{client_system}" if client_system else merged
        return dataclasses.replace(job, messages=[TextMessage("system", merged), *messages])

    async def complete(self, job: ChatJob) -> ChatReply:
        return await self.text_model().complete(self.instructed(job))

    async def stream(self, job: ChatJob) -> AsyncIterator[str | ChatReply]:
        async for item in self.text_model().stream(self.instructed(job)):
            yield item

    def count_tokens(self, text: str) -> int:
        return self.text_model().count_tokens(text)

    # --- speaking ---------------------------------------------------------------------

    async def speak(self, sentence: str, voice: str) -> bytes:
        """One sentence as pcm16 at 24 kHz."""
        job = SpeechJob(input=sentence, voice=voice, response_format="pcm")
        chunks = [chunk async for chunk in self.synthesizer().synthesize(job, SpeechMeter())]
        return b"".join(chunks)

    async def converse(self, job: ChatJob, voice: str) -> AsyncIterator[str | Spoken | ChatReply]:
        """Text deltas as the model writes, each finished sentence spoken, the reply last.

        The text model and the synthesizer run concurrently: the model keeps writing while
        earlier sentences are being spoken.
        """
        events: asyncio.Queue = asyncio.Queue()
        sentences: asyncio.Queue[Piece | None] = asyncio.Queue()
        done = object()

        async def write() -> None:
            splitter = SentenceSplitter()
            try:
                async for item in self.stream(job):
                    if isinstance(item, ChatReply):
                        await events.put(item)
                        continue
                    await events.put(item)
                    for sentence in splitter.feed(item):
                        sentences.put_nowait(sentence)
                for sentence in splitter.flush():
                    sentences.put_nowait(sentence)
            finally:
                sentences.put_nowait(None)

        async def say() -> None:
            while (sentence := await sentences.get()) is not None:
                pcm = await self.speak(sentence.text, voice)
                # The transcript keeps the spaces between sentences: joined, it is the text.
                await events.put(Spoken(pcm=pcm, transcript=sentence.covers))

        async def run() -> None:
            try:
                writer = asyncio.ensure_future(write())
                speaker = asyncio.ensure_future(say())
                try:
                    await asyncio.gather(writer, speaker)
                finally:
                    writer.cancel()
                    speaker.cancel()
                await events.put(done)
            except Exception as exc:  # handed to the reader, raised where it reads
                await events.put(exc)

        runner = asyncio.ensure_future(run())
        reply: ChatReply | None = None
        try:
            while (event := await events.get()) is not done:
                if isinstance(event, Exception):
                    raise event
                if isinstance(event, ChatReply):
                    reply = event  # held back: the reply closes the stream, after the audio
                else:
                    yield event
            if reply is not None:
                yield reply
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
