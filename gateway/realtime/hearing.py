"""Hearing a user's turn while it is spoken, so only its tail is left when it ends.

With server VAD a turn is transcribed piece by piece: each time the speaker pauses (and
before the pause is long enough to end the turn), the audio since the last cut is sent to
the transcriber in the background. When the turn ends only the audio after the last cut
remains (each piece is read with the text before it as its context, and what it only
writes back of that context is dropped); the pieces' texts, joined, are the transcript,
and each is one `conversation.item.input_audio_transcription.delta`. A turn committed by
hand (push-to-talk) is one piece.

The transcriber is the session's `audio.input.transcription.model` when one is set (with
its language and prompt), else the cascade's own.
"""

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

from core.errors import OpenAIError
from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.base import PCM_RATE, AudioUpload, Transcriber, TranscriptionJob
from gateway.realtime.audio_buffer import as_wav, ms_of

# A pause shorter than this does not cut (the piece would be a word or less).
MIN_PIECE_MS = 700
PAUSE_CUT_MS = 120  # cut this far into a pause: its start, with the word's last sound
# Fewer words than this repeating the turn's end may be the speaker's own.
MIN_REPEATED_WORDS = 3
_WORD = re.compile(r"\w+")


def transcriber_for(options: dict | None, fallback: Transcriber) -> Transcriber:
    """The session's transcription model, or the cascade's transcriber."""
    model = (options or {}).get("model")
    if not model:
        return fallback
    provider = provider_for(catalog().resolve(model, "transcription"))
    if not isinstance(provider, Transcriber):
        raise OpenAIError(f"`{model}` cannot transcribe.", status=500)
    return provider


async def transcribe_pcm(
    pcm: bytes, transcriber: Transcriber, options: dict | None, said_before: str = ""
) -> str:
    """The text of `pcm`; `said_before` (the turn so far) is read as its context, after the
    session's own prompt."""
    options = options or {}
    job = TranscriptionJob(
        upload=AudioUpload(content=as_wav(pcm), filename="input_audio.wav"),
        language=options.get("language") or None,
        prompt=joined([options.get("prompt") or "", said_before]) or None,
        live=True,
    )
    transcript = await transcriber.transcribe(job)
    return after_context(transcript.text.strip(), said_before)


def after_context(text: str, said_before: str) -> str:
    """`text` without what only writes its context back.

    Whisper, read a prompt, sometimes writes it again: all of the text, for a piece with no
    speech in it (the breath after a sentence), or at its start, before the piece's own
    words. The pieces do not overlap, so their words cannot rightly repeat the turn's last
    ones; a repeat of `MIN_REPEATED_WORDS` or more at the start is dropped, and a text that
    is nothing but the context's end is heard as nothing.
    """
    words, before = _words(text), _words(said_before)
    if words and before[-len(words) :] == words:
        return ""
    for count in range(min(len(words) - 1, len(before)), MIN_REPEATED_WORDS - 1, -1):
        if words[:count] == before[-count:]:
            return _without_words(text, count)
    return text


def _words(text: str) -> list[str]:
    return [match.group().casefold() for match in _WORD.finditer(text)]


def _without_words(text: str, count: int) -> str:
    """`text` from its `count`-th word's end on, without the punctuation that closed it."""
    end = list(_WORD.finditer(text))[count - 1].end()
    return text[end:].lstrip(" ,.;:!?-")


def joined(texts: list[str]) -> str:
    """A turn's transcript from its pieces' texts."""
    return " ".join(text for text in texts if text)


@dataclass
class UserTurn:
    """One turn of the user's speech, from its start (with padding) on the audio clock."""

    item_id: str
    start_ms: int
    transcriber: Transcriber
    options: dict | None = None
    cut_ms: int = 0  # where the next piece starts
    pieces: list[asyncio.Task] = field(default_factory=list)
    audio: bytes = b""  # the turn's audio so far (pcm16, 24 kHz)

    def __post_init__(self) -> None:
        self.cut_ms = self.start_ms

    @property
    def seconds(self) -> float:
        return len(self.audio) / 2 / PCM_RATE

    def worth_cutting(self, pause_start_ms: int) -> bool:
        return pause_start_ms + PAUSE_CUT_MS - self.cut_ms >= MIN_PIECE_MS

    def cut(self, pcm: bytes, end_ms: int) -> None:
        """Start transcribing `pcm`, the audio from the last cut to `end_ms`."""
        self.audio += pcm
        self.pieces.append(asyncio.ensure_future(self._hear(pcm, list(self.pieces))))
        self.cut_ms = end_ms

    async def _hear(self, pcm: bytes, before: list[asyncio.Task]) -> str:
        """One piece, read after the pieces before it (a word cut off from its sentence
        is heard better with the sentence so far as its context; those before are most
        often heard already)."""
        said_before = joined([await piece for piece in before]) if before else ""
        return await transcribe_pcm(pcm, self.transcriber, self.options, said_before)

    def finish(self, tail: bytes, speech_end_ms: int | None = None) -> None:
        """The turn ended: the audio after the last cut is its last piece, unless it is
        only the closing silence (the last cut was made in the final pause)."""
        silent = speech_end_ms is not None and self.cut_ms >= speech_end_ms
        if self.pieces and (silent or ms_of(len(tail)) < 100):
            self.audio += tail
            return
        self.cut(tail, self.cut_ms + ms_of(len(tail)))

    async def texts(self) -> list[str]:
        """Each piece's transcript, in order (the first failure raised)."""
        return [await piece for piece in self.pieces]

    def heard_so_far(self) -> str | None:
        """The transcript of the pieces cut so far, once all are heard (None until then,
        or if one failed)."""
        if not all(p.done() and not p.cancelled() and not p.exception() for p in self.pieces):
            return None
        return joined([piece.result() for piece in self.pieces])

    def abandon(self) -> None:
        for piece in self.pieces:
            piece.cancel()
            # A cancelled or failed piece is nobody's error now.
            piece.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def settle(self) -> None:
        """Wait for the pieces still running (a turn given up must not leave work behind)."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.gather(*self.pieces, return_exceptions=True)
