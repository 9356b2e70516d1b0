"""Audio chat as a cascade: speech-to-text → a text chat model → text-to-speech.

A catalog entry with `provider = "cascade"` names its three stages: `target` is any chat
model of the catalog (the local llama, or an upstream OpenAI-compatible one), and
`options.transcriber` / `options.synthesizer` name a transcription and a speech model.
Each stage is whatever provider serves that entry, so any of them can move upstream by a
catalog change.

The reply is spoken sentence by sentence while the text model is still writing: a
sentence goes to the synthesizer the moment it is complete, so the first audio leaves long
before the text is finished.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable

from core.errors import OpenAIError, invalid_param
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
    Transcriber,
    TranscriptionJob,
)

logger = logging.getLogger(__name__)

# Called with each ChatJob the cascade hands to its text model, so tests can check what
# the model was asked (the transcript of a spoken question). A failing observer is logged.
prompt_observers: list[Callable[[ChatJob], None]] = []

# A sentence ends at . ! ? … (closing quotes/brackets allowed) followed by whitespace.
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*\s+|\n+")
_CLAUSE_END = re.compile(r"[,;:—]\s+")
_SPACE = re.compile(r"\s+")


class SentenceSplitter:
    """Cuts a growing text into complete sentences as deltas arrive.

    The first piece decides the time to first audio, so it may end at a clause (a comma,
    semicolon or colon) once it is long enough to sound natural on its own.
    """

    FIRST_CLAUSE_CHARS = 16
    MAX_PIECE_CHARS = 200  # bounds the wait for audio when the text has no sentence ends

    def __init__(self) -> None:
        self._buffer = ""
        self._started = False

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        sentences = []
        while True:
            match = _SENTENCE_END.search(self._buffer)
            if match is None and not self._started:
                match = next(
                    (
                        m
                        for m in _CLAUSE_END.finditer(self._buffer)
                        if m.start() >= self.FIRST_CLAUSE_CHARS
                    ),
                    None,
                )
            if match is None and len(self._buffer) > self.MAX_PIECE_CHARS:
                match = self._overlong_cut()
            if match is None:
                return sentences
            piece, self._buffer = self._buffer[: match.end()], self._buffer[match.end() :]
            if piece.strip():
                sentences.append(piece)
                self._started = True

    def _overlong_cut(self) -> re.Match | None:
        """Text with no sentence end for too long: cut at its last clause, else word, break."""
        head = self._buffer[: self.MAX_PIECE_CHARS]
        for pattern in (_CLAUSE_END, _SPACE):
            cuts = list(pattern.finditer(head))
            if cuts:
                return cuts[-1]
        return None

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        return [rest] if rest.strip() else []


class CascadeProvider:
    """Implements ChatModel (text in, text out) and the audio chat around it."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        options = entry.options
        self.transcriber_id = options.get("transcriber")
        self.synthesizer_id = options.get("synthesizer")

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

    def _observe(self, job: ChatJob) -> None:
        for observer in prompt_observers:
            try:
                observer(job)
            except Exception:
                logger.exception("prompt observer failed")

    async def complete(self, job: ChatJob) -> ChatReply:
        self._observe(job)
        return await self.text_model().complete(job)

    async def stream(self, job: ChatJob) -> AsyncIterator[str | ChatReply]:
        self._observe(job)
        async for item in self.text_model().stream(job):
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
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
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
                pcm = await self.speak(sentence.strip(), voice)
                await events.put(Spoken(pcm=pcm, transcript=sentence))

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
