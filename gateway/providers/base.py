"""The narrow interfaces a provider implements, one per capability.

Views speak only these interfaces; local engines and upstream services both implement
them, so routing a model elsewhere is a catalog change, not a code change.
"""

import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, Protocol, runtime_checkable

# --- speech to text ---------------------------------------------------------------------


@dataclass(frozen=True)
class AudioUpload:
    """Audio as the client sent it, with the name it gave it.

    Small uploads are bytes in memory. A large one stays in the temporary file Django
    spilled it to (`path`): decoders open the file, and an upstream request streams it.
    """

    content: bytes = b""
    filename: str = "audio"
    content_type: str = ""
    path: str | None = None

    @property
    def size(self) -> int:
        return os.path.getsize(self.path) if self.path else len(self.content)

    @property
    def source(self) -> bytes | str:
        """What a decoder opens: the file's path, or the bytes."""
        return self.path or self.content

    @contextlib.contextmanager
    def opened(self) -> Iterator[bytes | BinaryIO]:
        """What an HTTP client sends: the bytes, or the spilled file open for streaming."""
        if self.path is None:
            yield self.content
            return
        with open(self.path, "rb") as file:
            yield file


@dataclass(frozen=True)
class TranscriptionJob:
    upload: AudioUpload
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    # response_format=diarized_json: label who speaks each segment (Segment.speaker),
    # naming them from `known_speakers` where the provider can.
    diarize: bool = False
    known_speakers: tuple["KnownSpeaker", ...] = ()
    include_logprobs: bool = False  # include[]=logprobs: fill Transcript.logprobs
    # chunking_strategy: "auto", server_vad settings, or None (the client sent none).
    chunking_strategy: "Literal['auto'] | ServerVad | None" = None
    # A piece of live speech (a realtime turn, already cut by voice activity detection):
    # someone is waiting for the reply, so a provider that can trades a little accuracy
    # for speed (local Whisper: the piece encoded at its own length, one temperature).
    live: bool = False

    def prompt_terms(self, most: int = 100) -> list[str]:
        """The prompt as key terms (what its commas, semicolons or line breaks separate),
        for vendors that take a list of terms rather than a prompt."""
        if not self.prompt:
            return []
        terms = (term.strip() for term in _TERM_SEPARATORS.split(self.prompt))
        return list(dict.fromkeys(term for term in terms if term))[:most]


_TERM_SEPARATORS = re.compile(r"[,;\n]+")


@dataclass(frozen=True)
class ServerVad:
    """chunking_strategy={"type": "server_vad", ...}: where voice activity detection cuts
    the audio (OpenAI's defaults for the fields a client leaves out)."""

    prefix_padding_ms: int = 300
    silence_duration_ms: int = 200
    threshold: float = 0.5


@dataclass(frozen=True)
class KnownSpeaker:
    """known_speaker_names[i] with its reference clip known_speaker_references[i]
    (a data: URL of 2-10 s of that speaker)."""

    name: str
    reference: str


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None  # diarization's label ("A", "B", or a known speaker's name)
    logprobs: "list[TokenLogprob] | None" = None  # this segment's tokens (include[]=logprobs)


def speaker_label(index: int) -> str:
    """ "A", "B", ..., "Z", "AA", "AB", ...: the n-th speaker heard, as OpenAI labels them."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


@dataclass(frozen=True)
class TokenLogprob:
    """One token of the transcript and its log-probability (include[]=logprobs)."""

    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float  # seconds of audio heard, the billing unit
    segments: list[Segment]
    words: list[Word] | None = None
    logprobs: list[TokenLogprob] | None = None


@runtime_checkable
class Transcriber(Protocol):
    async def transcribe(self, job: TranscriptionJob) -> Transcript: ...

    def stream_transcription(self, job: TranscriptionJob) -> AsyncIterator[Segment | Transcript]:
        """Yield each segment as it is decoded, then the whole Transcript last."""
        ...


# --- text to speech ---------------------------------------------------------------------

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


@dataclass(frozen=True)
class SpeechJob:
    input: str
    voice: str
    response_format: SpeechFormat = "mp3"
    speed: float = 1.0
    instructions: str | None = None


@dataclass
class SpeechMeter:
    """Filled in while a speech stream runs, read when it ends or the client leaves."""

    characters: int = 0
    audio_seconds: float = 0.0


@runtime_checkable
class Synthesizer(Protocol):
    def voices(self) -> dict[str, str]:
        """Every voice name this provider accepts, mapped to what it really uses."""
        ...

    def synthesize(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        """Yield encoded audio in job.response_format as soon as each piece exists."""
        ...


# --- chat -------------------------------------------------------------------------------

PCM_RATE = 24_000  # chat and realtime audio: pcm16, 16-bit mono little-endian at 24 kHz


@dataclass(frozen=True)
class TextMessage:
    """One message as a text model reads it: a role and plain text (audio already heard)."""

    role: Literal["system", "user", "assistant"]
    text: str


@dataclass
class ChatJob:
    """A validated chat completion request, reduced to what a text model needs."""

    messages: list[TextMessage]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass(frozen=True)
class ChatReply:
    """A finished reply, with token counts from the model's own tokenizer."""

    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class ChatModel(Protocol):
    async def complete(self, job: ChatJob) -> ChatReply: ...

    def stream(self, job: ChatJob) -> AsyncIterator[str | ChatReply]:
        """Yield text deltas as they are generated, then the whole ChatReply last."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` costs in this model's tokenizer (usage splits prompts by part)."""
        ...


@runtime_checkable
class ChatRelay(Protocol):
    """An upstream that hears and speaks itself: whole OpenAI chat bodies go to it."""

    async def relay_chat(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def relay_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The upstream's chunks as they arrive, up to its `[DONE]`."""
        ...


@dataclass(frozen=True)
class Heard:
    """One audio part, transcribed."""

    text: str
    seconds: float


@dataclass(frozen=True)
class Spoken:
    """A sentence of the reply as pcm16 (24 kHz mono), ready to send."""

    pcm: bytes
    transcript: str

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / PCM_RATE


@runtime_checkable
class VoiceChat(Protocol):
    """Audio chat made here: hears audio parts as text, speaks replies as they are written."""

    def voices(self) -> dict[str, str]: ...

    async def hear(self, data: bytes, fmt: str, param: str) -> Heard: ...

    def converse(self, job: ChatJob, voice: str) -> AsyncIterator[str | Spoken | ChatReply]:
        """Yield text deltas and each spoken sentence as they exist, then the ChatReply."""
        ...


# --- how a provider is run ----------------------------------------------------------------


@runtime_checkable
class Preloadable(Protocol):
    """A local engine whose weights can be loaded before its first request (AROUTER_PRELOAD)."""

    def preload(self) -> None: ...


@runtime_checkable
class LogsOwnAttempts(Protocol):
    """A provider that adds each of its tries to the request's attempt log itself.

    An upstream logs every HTTP try (retries and cooldown skips included) under `label`,
    "upstream:NAME"; a fallback chain logs one outcome only for providers that do not.
    """

    @property
    def label(self) -> str: ...
