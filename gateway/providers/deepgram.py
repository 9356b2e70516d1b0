"""Deepgram: speech to text with Nova (pre-recorded `/v1/listen`), text to speech with Aura
(`/v1/speak`). The client speaks OpenAI's API; this module speaks Deepgram's.

Speech to text: the upload is the request body as it is (Deepgram reads every common
format), with `smart_format`, `punctuate` and `utterances` on, the client's `language`
(else `detect_language`), `diarize` for diarized transcripts, and the prompt as key terms
(`keyterm` for Nova-3, `keywords` for older models; comma- or line-separated terms).
Deepgram's utterances become the segments (speakers 0, 1, ... become "A", "B", ... in the
order they first speak; a server_vad chunking_strategy's silence_duration_ms is their
`utt_split`), its words the words (their confidences the logprobs), `metadata.duration`
the billed duration.
Deepgram does not translate, nor match speakers to reference clips: translations and
`known_speaker_names[]` are refused with OpenAI's 400 before any request.

Text to speech: OpenAI's voice names map to Aura voices (`options.voices`, else
DEFAULT_VOICES; an Aura voice's own name is accepted too) and every OpenAI format is asked
of Deepgram natively (wav and pcm as 24 kHz linear16, opus in Ogg), so the audio bytes are
passed on as they arrive. Aura takes at most 2,000 characters a request: a longer input is
cut at sentence ends into requests under the limit, each asked as 24 kHz PCM and encoded
here (gateway.audio.encode) into one stream of the asked format. `speed` is Deepgram's
(0.7-1.5; other speeds are refused); `instructions` has no Deepgram counterpart and is
not sent. Characters are billed as Deepgram counts them (its character-count header).

Errors: Deepgram's bodies (`{"err_code", "err_msg"}` or `{"category", "message",
"details"}`) give the message of OpenAI's envelope; statuses map as for every upstream
(gateway.providers.upstream_client).

Catalog example:

    [upstreams.deepgram]
    base_url = "https://api.deepgram.com"
    api_key_env = "DEEPGRAM_API_KEY"

    [models."deepgram/nova-3"]
    kind = "transcription"
    provider = "deepgram"
    upstream = "deepgram"
    target = "nova-3"
    description = "Deepgram Nova-3 (pre-recorded), diarization and key terms."
    price = { per_audio_minute = 0.0043 }

    [models."deepgram/aura-2"]
    kind = "speech"
    provider = "deepgram"
    upstream = "deepgram"
    target = "aura-2"
    description = "Deepgram Aura-2 voices under OpenAI's voice names."
    price = { per_million_characters = 30 }
    # options = { voices = { alloy = "aura-2-thalia-en", onyx = "aura-2-zeus-en" } }

Options: transcription `language` (sent when the client gives none, e.g. "multi", instead
of language detection), `prompt_terms` ("keyterm", "keywords" or "none"), `query` (more
/v1/listen parameters, e.g. `{ numerals = true }`); speech `voices`,
`max_input_characters` (2000).
"""

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np

from core.errors import OpenAIError, invalid_param
from gateway.audio import transcode
from gateway.audio.encode import OUTPUT_RATE, StreamEncoder
from gateway.audio.languages import language_name, whisper_code
from gateway.audio.sentences import MAX_PIECE_CHARS, split_pieces
from gateway.catalog import CatalogError, ModelEntry, catalog
from gateway.providers.base import (
    AudioUpload,
    Segment,
    ServerVad,
    SpeechJob,
    SpeechMeter,
    TokenLogprob,
    Transcript,
    TranscriptionJob,
    Word,
    speaker_label,
)
from gateway.providers.upstream import mid_stream_failure
from gateway.providers.upstream_client import Dialect, bad_response, client_for, timed_out

LISTEN = "/v1/listen"
SPEAK = "/v1/speak"

# OpenAI's voices -> Aura-2 English voices of a like character.
DEFAULT_VOICES: dict[str, str] = {
    "alloy": "aura-2-thalia-en",
    "ash": "aura-2-arcas-en",
    "ballad": "aura-2-orpheus-en",
    "coral": "aura-2-cora-en",
    "echo": "aura-2-apollo-en",
    "fable": "aura-2-draco-en",
    "nova": "aura-2-luna-en",
    "onyx": "aura-2-zeus-en",
    "sage": "aura-2-athena-en",
    "shimmer": "aura-2-asteria-en",
    "verse": "aura-2-hermes-en",
    "marin": "aura-2-andromeda-en",
    "cedar": "aura-2-atlas-en",
}
# OpenAI's formats as Deepgram's encoding/container/sample_rate combinations. The sample
# rates of mp3, opus and aac are fixed at Deepgram (22.05, 48, 22.05 kHz): none is sent.
SPEAK_FORMATS: dict[str, dict[str, str]] = {
    "mp3": {"encoding": "mp3"},
    "opus": {"encoding": "opus", "container": "ogg"},
    "aac": {"encoding": "aac"},
    "flac": {"encoding": "flac"},
    "wav": {"encoding": "linear16", "container": "wav", "sample_rate": str(OUTPUT_RATE)},
    "pcm": {"encoding": "linear16", "container": "none", "sample_rate": str(OUTPUT_RATE)},
}
PCM_BYTES_PER_SECOND = OUTPUT_RATE * 2
WAV_HEADER_BYTES = 44
AURA_MAX_CHARACTERS = 2000
SPEED_RANGE = (0.7, 1.5)
# Aura sends its character count in one of these (Aura-2's, then Aura-1's).
CHARACTER_HEADERS = ("x-dg-characters", "dg-char-count")
PROMPT_PARAMETERS = ("keyterm", "keywords", "none")
MAX_PROMPT_TERMS = 100


# --- the HTTP dialect ---------------------------------------------------------------------


def _token_auth(key: str) -> dict[str, str]:
    return {"authorization": f"Token {key}"}


def deepgram_error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of a Deepgram error body.

    Deepgram answers `{"err_code", "err_msg", "request_id"}` or `{"category", "message",
    "details", "request_id"}` (and, rarely, `{"value": "..."}` or a bare string). Its codes
    ("Bad Request", "INVALID_AUTH") are not OpenAI's, so only the message is kept.
    """
    if isinstance(body, str):
        return body, None, None
    if not isinstance(body, dict):
        return "", None, None
    message = body.get("err_msg") or body.get("message") or body.get("value") or ""
    details = body.get("details")
    if details and isinstance(details, str) and details not in str(message):
        message = f"{message} ({details})" if message else details
    return str(message), None, None


DEEPGRAM = Dialect(auth_headers=_token_auth, error_fields=deepgram_error_fields)


# --- Deepgram's transcript as OpenAI's ---------------------------------------------------


class SpeakerLabels:
    """Deepgram's speaker numbers as letters, in the order the speakers are first heard."""

    def __init__(self) -> None:
        self._labels: dict[int, str] = {}

    def __call__(self, speaker: Any) -> str | None:
        if not isinstance(speaker, int):
            return None
        if speaker not in self._labels:
            self._labels[speaker] = speaker_label(len(self._labels))
        return self._labels[speaker]


def _word(raw: dict[str, Any]) -> Word:
    return Word(
        word=str(raw.get("punctuated_word") or raw.get("word") or ""),
        start=float(raw.get("start", 0.0)),
        end=float(raw.get("end", 0.0)),
    )


def _logprob(confidence: Any) -> float:
    """A confidence in [0, 1] as a log-probability (Whisper's avg_logprob, OpenAI's logprob)."""
    try:
        return math.log(max(float(confidence), 1e-6))
    except (TypeError, ValueError):
        return 0.0


def _segment(index: int, raw: dict[str, Any], job: TranscriptionJob, labels: SpeakerLabels):
    words = raw.get("words") or []
    return Segment(
        id=index,
        seek=0,
        start=float(raw.get("start", 0.0)),
        end=float(raw.get("end", 0.0)),
        # Whisper's segments begin with a space: streamed deltas join as the text does.
        text=" " + str(raw.get("transcript", "")).strip(),
        tokens=[],
        temperature=job.temperature,
        avg_logprob=_logprob(raw.get("confidence", 1.0)),
        compression_ratio=0.0,
        no_speech_prob=0.0,
        words=[_word(w) for w in words],
        speaker=labels(raw.get("speaker")) if job.diarize else None,
        logprobs=_logprobs(words) if job.include_logprobs else None,
    )


def _segments(results: dict[str, Any], alternative: dict[str, Any], job: TranscriptionJob):
    labels = SpeakerLabels()
    utterances = results.get("utterances")
    if utterances is None and alternative.get("transcript"):
        # No utterances in the answer: the whole transcript is one segment.
        words = alternative.get("words") or []
        utterances = [
            {
                "start": words[0].get("start", 0.0) if words else 0.0,
                "end": words[-1].get("end", 0.0) if words else 0.0,
                "transcript": alternative["transcript"],
                "confidence": alternative.get("confidence", 1.0),
                "words": words,
                "speaker": words[0].get("speaker") if words else None,
            }
        ]
    return [_segment(i, raw, job, labels) for i, raw in enumerate(utterances or [])]


def _language(channel: dict[str, Any], job: TranscriptionJob) -> str:
    code = channel.get("detected_language") or job.language or "en"
    return language_name(whisper_code(str(code)) or str(code))


def _logprobs(words: list[dict[str, Any]]) -> list[TokenLogprob]:
    logprobs = []
    for raw in words:
        token = str(raw.get("punctuated_word") or raw.get("word") or "")
        logprobs.append(TokenLogprob(token, _logprob(raw.get("confidence")), list(token.encode())))
    return logprobs


async def transcript_of(body: dict[str, Any], job: TranscriptionJob) -> Transcript:
    """OpenAI's Transcript from a /v1/listen answer (channel 0, first alternative)."""
    try:
        results = body["results"]
        channel = results["channels"][0]
        alternative = channel["alternatives"][0]
        text = str(alternative["transcript"])
    except (KeyError, IndexError, TypeError):
        raise bad_response("no transcript") from None
    words = alternative.get("words") or []
    duration = (body.get("metadata") or {}).get("duration")
    if not isinstance(duration, int | float):
        # No duration from Deepgram: measure it, so the call is never billed at $0.
        duration = await asyncio.to_thread(transcode.duration_of, job.upload.source)
    return Transcript(
        text=text,
        language=_language(channel, job),
        duration=float(duration),
        segments=_segments(results, alternative, job),
        words=[_word(w) for w in words] if job.word_timestamps else None,
        logprobs=_logprobs(words) if job.include_logprobs else None,
    )


def _default_prompt_parameter(model: str) -> str:
    """Key-term prompting is Nova-3's; Nova-2 and older models take `keywords`."""
    if model.startswith("nova-3"):
        return "keyterm"
    if model.startswith(("nova", "enhanced", "base")):
        return "keywords"
    return "none"


def _query_value(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return ["true" if v is True else "false" if v is False else str(v) for v in values]


class FileBody:
    """A spilled upload as an HTTP body: read in 64 KB pieces, from the start on each try
    (an object, not a generator, so httpx may iterate it again for a retry)."""

    CHUNK = 64 * 1024

    def __init__(self, path: str) -> None:
        self.path = path

    async def __aiter__(self) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(open, self.path, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, self.CHUNK):
                yield chunk
        finally:
            file.close()


def _upload_content_type(upload: AudioUpload) -> str:
    # A client's part type of application/json would make Deepgram read the audio as a
    # JSON {"url": ...} request; anything but audio or video is sent as plain bytes.
    content_type = upload.content_type.lower()
    if content_type.startswith(("audio/", "video/")):
        return content_type
    return "application/octet-stream"


# --- long speech: cut under Aura's limit ---------------------------------------------------


def speech_parts(text: str, limit: int) -> list[str]:
    """`text` cut at sentence (or clause, or word) ends into parts of at most `limit`
    (at least MAX_PIECE_CHARS, the longest piece the splitter makes)."""
    parts: list[str] = []
    start = end = None
    for piece in split_pieces(text):
        if start is not None and piece.end - start > limit:
            parts.append(text[start:end])
            start = None
        if start is None:
            start = piece.start
        end = piece.end
    if start is not None:
        parts.append(text[start:end])
    return parts


class PcmFrames:
    """Bytes of 16-bit PCM as they arrive, as whole samples (a chunk may split one)."""

    def __init__(self) -> None:
        self._odd = b""

    def samples(self, chunk: bytes) -> np.ndarray:
        data = self._odd + chunk
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        return np.frombuffer(data[:whole], dtype="<i2")


# --- the provider -------------------------------------------------------------------------


def cannot_translate(model_id: str) -> OpenAIError:
    return invalid_param(
        f"The model `{model_id}` transcribes only: Deepgram does not translate. Use a model "
        "that translates, such as local/whisper-base.",
        param="model",
        code="model_not_supported",
    )


def cannot_name_speakers(model_id: str) -> OpenAIError:
    return invalid_param(
        f"'known_speaker_names[]' is not supported by `{model_id}`: Deepgram tells speakers "
        "apart (labelled A, B, ...) but cannot match them to reference clips.",
        param="known_speaker_names[]",
        code="unsupported_value",
    )


def unsupported_speed(speed: float, model_id: str) -> OpenAIError:
    low, high = SPEED_RANGE
    return invalid_param(
        f"Invalid value for 'speed': {speed} is not supported by `{model_id}`; Deepgram's "
        f"Aura voices speak at {low} to {high} times their normal pace.",
        param="speed",
        code="unsupported_value",
    )


class DeepgramProvider:
    """Transcriber (Nova, pre-recorded) and Synthesizer (Aura) on one Deepgram upstream."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.client = client_for(catalog().upstreams[entry.upstream], DEEPGRAM)
        self.model = entry.target
        language = entry.options.get("language")
        if language is not None and not isinstance(language, str):
            raise self._misconfigured("language", "must be a string such as 'multi'")
        self.default_language = language
        self.prompt_parameter = str(
            entry.options.get("prompt_terms") or _default_prompt_parameter(self.model)
        )
        if self.prompt_parameter not in PROMPT_PARAMETERS:
            raise self._misconfigured("prompt_terms", f"must be one of {PROMPT_PARAMETERS}")
        self.extra_query = self._table("query", {})
        self._voices = {str(k): str(v) for k, v in self._table("voices", DEFAULT_VOICES).items()}
        limit = entry.options.get("max_input_characters", AURA_MAX_CHARACTERS)
        if not isinstance(limit, int) or limit < MAX_PIECE_CHARS:
            raise self._misconfigured("max_input_characters", f"must be at least {MAX_PIECE_CHARS}")
        self.max_input_characters = limit

    def _misconfigured(self, option: str, problem: str) -> CatalogError:
        return CatalogError(f'[models."{self.entry.id}"] options.{option}: {problem}')

    def _table(self, option: str, default: dict[str, Any]) -> dict[str, Any]:
        value = self.entry.options.get(option, default)
        if not isinstance(value, dict):
            raise self._misconfigured(option, "must be a table")
        return dict(value)

    @property
    def label(self) -> str:
        return self.client.label

    # --- speech to text -----------------------------------------------------------------

    def listen_query(self, job: TranscriptionJob) -> list[tuple[str, str]]:
        query = [
            ("model", self.model),
            ("smart_format", "true"),
            ("punctuate", "true"),
            ("utterances", "true"),
        ]
        language = job.language or self.default_language
        query.append(("language", language) if language else ("detect_language", "true"))
        if job.diarize:
            query.append(("diarize", "true"))
        if self.prompt_parameter != "none":
            query += [(self.prompt_parameter, term) for term in job.prompt_terms(MAX_PROMPT_TERMS)]
        if isinstance(job.chunking_strategy, ServerVad):
            # The silence that ends an utterance (a segment): Deepgram's utt_split, seconds.
            query.append(("utt_split", f"{job.chunking_strategy.silence_duration_ms / 1000:g}"))
        for name, value in self.extra_query.items():
            query += [(name, v) for v in _query_value(value)]
        return query

    async def transcribe(self, job: TranscriptionJob) -> Transcript:
        if job.task == "translate":
            raise cannot_translate(self.entry.id)
        if job.known_speakers:
            raise cannot_name_speakers(self.entry.id)
        upload = job.upload
        headers = {
            "content-type": _upload_content_type(upload),
            "content-length": str(upload.size),
        }
        content = FileBody(upload.path) if upload.path else upload.content
        body = await self.client.json(
            "POST", LISTEN, params=self.listen_query(job), content=content, headers=headers
        )
        return await transcript_of(body, job)

    async def stream_transcription(
        self, job: TranscriptionJob
    ) -> AsyncIterator[Segment | Transcript]:
        # Pre-recorded answers come whole; their segments are streamed as text deltas.
        transcript = await self.transcribe(job)
        for segment in transcript.segments:
            yield segment
        yield transcript

    # --- text to speech -----------------------------------------------------------------

    def voices(self) -> dict[str, str]:
        """OpenAI's voice names and every Aura voice they map to (accepted by its name)."""
        return {**self._voices, **{aura: aura for aura in self._voices.values()}}

    def speak_query(self, job: SpeechJob, fmt: str) -> dict[str, str]:
        query = {"model": self.voices()[job.voice], **SPEAK_FORMATS[fmt]}
        if job.speed != 1.0:
            low, high = SPEED_RANGE
            if not low <= job.speed <= high:
                raise unsupported_speed(job.speed, self.entry.id)
            query["speed"] = f"{job.speed:g}"
        return query

    async def synthesize(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        if len(job.input) <= self.max_input_characters:
            audio = self._speak_native(job, meter)
        else:
            audio = self._speak_in_parts(job, meter)
        async for chunk in audio:
            yield chunk

    async def _open_speech(self, text: str, query: dict[str, str]) -> tuple[httpx.Response, int]:
        """Deepgram's streamed audio answer for `text`, and the characters it counts."""
        response = await self.client.open("POST", SPEAK, params=query, json={"text": text})
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith(("audio/", "application/octet-stream")):
            await response.aclose()
            raise bad_response(f"expected audio, got {content_type.split(';')[0] or 'none'}")
        for header in CHARACTER_HEADERS:
            if (value := response.headers.get(header, "")).isdigit():
                return response, int(value)
        return response, len(text)

    async def _chunks(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The response's bytes as they arrive; a broken stream is OpenAI's error."""
        try:
            async for chunk in response.aiter_raw():
                if chunk:
                    yield chunk
        except httpx.TimeoutException:
            raise timed_out() from None
        except httpx.TransportError:
            raise mid_stream_failure() from None
        finally:
            await response.aclose()

    async def _speak_native(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        """One request; Deepgram's own encoding of the asked format, passed on as it comes."""
        fmt = job.response_format
        response, characters = await self._open_speech(job.input, self.speak_query(job, fmt))
        meter.characters = characters
        bytes_out = 0
        async for chunk in self._chunks(response):
            bytes_out += len(chunk)
            if fmt in ("pcm", "wav"):
                header = WAV_HEADER_BYTES if fmt == "wav" else 0
                meter.audio_seconds = max(0, bytes_out - header) / PCM_BYTES_PER_SECOND
            yield chunk

    async def _speak_in_parts(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        """Input over Aura's limit: each part as PCM, encoded here into one stream."""
        encoder = StreamEncoder(job.response_format, OUTPUT_RATE)
        query = self.speak_query(job, "pcm")
        try:
            for text in speech_parts(job.input, self.max_input_characters):
                response, characters = await self._open_speech(text, query)
                meter.characters += characters
                frames = PcmFrames()
                async for chunk in self._chunks(response):
                    if encoded := encoder.encode(frames.samples(chunk)):
                        yield encoded
                    meter.audio_seconds = encoder.seconds_out
            if tail := encoder.finish():
                yield tail
            meter.audio_seconds = encoder.seconds_out
        finally:
            encoder.close()
