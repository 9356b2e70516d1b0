"""ElevenLabs behind OpenAI's audio API: streamed text to speech and Scribe speech to text.

The client speaks OpenAI's API unchanged; the catalog routes a model id here. One entry is
one ElevenLabs model (`target` is its `model_id`): a speech entry streams
`POST /v1/text-to-speech/{voice_id}/stream`, a transcription entry sends
`POST /v1/speech-to-text` (Scribe). The key goes in ElevenLabs' `xi-api-key` header, and
ElevenLabs' error bodies (`{"detail": {"status", "message"}}`, `{"detail": "..."}`, or a
list of validation errors) become OpenAI envelopes through the shared upstream client,
which also retries, cools down and uses a team's own key.

Speech:
- voices: OpenAI's voice names map to ElevenLabs voice ids (`options.voices` replaces the
  default map below, which uses ElevenLabs' premade voices every account has);
- formats: mp3 and opus are ElevenLabs' own (`mp3_44100_128`, Ogg `opus_48000_64`), pcm is
  its `pcm_24000` (raw 16-bit little-endian mono at 24 kHz, exactly OpenAI's pcm); wav, flac
  and aac ElevenLabs cannot make, so they are encoded here from its pcm as it streams.
  `options.output_formats` picks another ElevenLabs format per OpenAI format; a `pcm_RATE`
  one is always re-encoded here;
- speed: ElevenLabs' `voice_settings.speed` takes 0.7-1.2; other speeds are refused with
  a 400 rather than clamped. `options.voice_settings` (stability, similarity_boost, style,
  use_speaker_boost) is sent with every request. OpenAI's `instructions` has no ElevenLabs
  counterpart and is not sent (OpenAI's tts-1 ignores it likewise);
- usage: characters as ElevenLabs counted them (`x-character-count`), else the input's.

Transcription: the client's `prompt` becomes Scribe's `keyterms` (the phrases its commas,
semicolons or line breaks separate, as far as Scribe takes them: under 50 characters, at
most five words) for Scribe v2, which has them; ElevenLabs charges 20% more for a request
with key terms, and `options.prompt_as = "ignore"` never sends them. Word timestamps are
always asked for (`timestamps_granularity=word`); the answer's items of type `word` become
OpenAI's words, and segments are cut at sentence ends, at pauses (a server_vad
chunking_strategy's silence_duration_ms, else 1 s) and where the speaker changes. With
response_format=diarized_json each segment names its speaker "A", "B", ... in order of
appearance. Word log-probabilities answer `include[]=logprobs`, for the whole transcript
and for each segment. The billed duration is ElevenLabs' `audio_duration_secs`, else the
upload's decoded length, never 0 for audio that was heard. ElevenLabs does not translate:
translations are refused, and known speakers (reference clips) too.

Example catalog entries (prices are ElevenLabs' API list prices at the time of writing:
Flash v2.5 $0.05 per 1,000 characters, Scribe $0.40 an hour):

    [upstreams.elevenlabs]
    base_url = "https://api.elevenlabs.io"
    api_key_env = "ELEVENLABS_API_KEY"

    [models."elevenlabs/eleven-flash-v2.5"]
    kind = "speech"
    provider = "elevenlabs"
    upstream = "elevenlabs"
    target = "eleven_flash_v2_5"
    price = { per_million_characters = 50 }
    # options = { voices = { alloy = "SAz9YHcvj6GT2YYXdXww", rachel = "21m00Tcm4TlvDq8ikWAM" },
    #             voice_settings = { stability = 0.5, similarity_boost = 0.75 } }

    [models."elevenlabs/scribe-v1"]
    kind = "transcription"
    provider = "elevenlabs"
    upstream = "elevenlabs"
    target = "scribe_v1"
    price = { per_audio_minute = 0.0067 }
    # options = { tag_audio_events = true }   # "(laughter)" and the like in the text
    # (target = "scribe_v2" takes the prompt's key terms; prompt_as = "ignore" drops them)

References: https://elevenlabs.io/docs/api-reference/text-to-speech/stream,
https://elevenlabs.io/docs/api-reference/speech-to-text/convert,
https://elevenlabs.io/docs/api-reference/authentication.
"""

import asyncio
import json
import math
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from core.errors import OpenAIError, invalid_param
from gateway.audio import transcode
from gateway.audio.encode import StreamEncoder
from gateway.audio.languages import language_name, whisper_code
from gateway.catalog import CatalogError, ModelEntry, catalog
from gateway.providers.base import (
    Segment,
    ServerVad,
    SpeechFormat,
    SpeechJob,
    SpeechMeter,
    TokenLogprob,
    Transcript,
    TranscriptionJob,
    Word,
    speaker_label,
)
from gateway.providers.form_upload import FormUpload
from gateway.providers.upstream import mid_stream_failure
from gateway.providers.upstream_client import Dialect, bad_response, client_for, timed_out

# --- the HTTP dialect -----------------------------------------------------------------------

# Where ElevenLabs' validation errors point (`loc`), named as the OpenAI request names it.
_OPENAI_PARAMS = {
    "text": "input",
    "speed": "speed",
    "voice_id": "voice",
    "output_format": "response_format",
    "model_id": "model",
    "file": "file",
    "language_code": "language",
    "temperature": "temperature",
}


def _auth_headers(key: str) -> dict[str, str]:
    return {"xi-api-key": key}


def _validation_fields(errors: list) -> tuple[str, str | None, str | None]:
    """A FastAPI-style list of validation errors: the first one, named as OpenAI would."""
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    loc = [str(part) for part in first.get("loc") or [] if part not in ("body", "query")]
    param = _OPENAI_PARAMS.get(loc[-1]) if loc else None
    message = str(first.get("msg") or "Invalid request.")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return message, param, "invalid_value"


def elevenlabs_error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of an ElevenLabs error body, whichever of its shapes."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        status = detail.get("status")
        return str(detail.get("message") or ""), None, str(status) if status else None
    if isinstance(detail, str):
        return detail, None, None
    if isinstance(detail, list):
        return _validation_fields(detail)
    return "", None, None


ELEVENLABS = Dialect(auth_headers=_auth_headers, error_fields=elevenlabs_error_fields)

# --- speech ----------------------------------------------------------------------------------

# OpenAI's voices as ElevenLabs premade voices of a like character (ElevenLabs' names in
# the comments), so every OpenAI voice name works without configuration.
DEFAULT_VOICES: dict[str, str] = {
    "alloy": "SAz9YHcvj6GT2YYXdXww",  # River: neutral, calm
    "ash": "TX3LPaxmHKxFdv7VOQHJ",  # Liam: young man, articulate
    "ballad": "bIHbv24MWmeRgasZH58o",  # Will: relaxed man
    "coral": "cgSgspJ2msm6clMCkdW9",  # Jessica: warm young woman
    "echo": "cjVigY5qzO86Huf0OWal",  # Eric: smooth man
    "fable": "JBFqnCBsd6RMkjVDRZzb",  # George: British storyteller
    "nova": "EXAVITQu4vr4xnSDxMaL",  # Sarah: bright, confident woman
    "onyx": "nPczCjzI2devNBz1zQrb",  # Brian: deep man
    "sage": "XrExE9yKIg1WjnnlVkGX",  # Matilda: calm, knowledgeable woman
    "shimmer": "pFZP5JQG7iQjIQuC4Bku",  # Lily: soft woman
    "verse": "iP95p4xoKVk53GoZ742B",  # Chris: expressive man
    "marin": "Xb7hH8MSUJpSbSDYk0k2",  # Alice: clear woman
    "cedar": "CwhRBWXzGAHq8TQ4Fs17",  # Roger: resonant man
}
DEFAULT_OUTPUT_FORMATS: dict[str, str] = {
    "mp3": "mp3_44100_128",
    "opus": "opus_48000_64",
    "pcm": "pcm_24000",
    "wav": "pcm_24000",
    "flac": "pcm_24000",
    "aac": "pcm_24000",
}
OPENAI_PCM_RATE = 24_000
SPEED_RANGE = (0.7, 1.2)  # what ElevenLabs' voice_settings.speed accepts


@dataclass(frozen=True)
class OutputPlan:
    """How one OpenAI format is made: ElevenLabs' `output_format`, and, when the bytes
    are re-encoded here from its PCM, that PCM's sample rate."""

    output_format: str
    pcm_rate: int | None = None


def output_plan(openai_format: str, output_format: str) -> OutputPlan:
    """The plan for `openai_format` from ElevenLabs' `output_format`, or why it cannot be."""
    if openai_format not in DEFAULT_OUTPUT_FORMATS:
        raise ValueError(f"{openai_format!r} is not one of OpenAI's speech formats")
    codec, _, rest = output_format.partition("_")
    if codec == "pcm":
        if not rest.isdigit():
            raise ValueError(f"{output_format!r} names no sample rate")
        rate = int(rest)
        if openai_format == "pcm" and rate == OPENAI_PCM_RATE:
            return OutputPlan(output_format)  # already OpenAI's pcm, byte for byte
        return OutputPlan(output_format, pcm_rate=rate)
    if codec == openai_format and codec in ("mp3", "opus"):
        return OutputPlan(output_format)
    raise ValueError(f"ElevenLabs' {output_format!r} cannot be served as OpenAI's {openai_format}")


def _speed_refused(speed: float) -> OpenAIError:
    low, high = SPEED_RANGE
    return invalid_param(
        f"Invalid value for 'speed': this model speaks at {low} to {high} times its normal "
        f"speed, not {speed:g}.",
        param="speed",
        code="unsupported_value",
    )


def _billed_characters(response: httpx.Response, text: str) -> int:
    """Characters as ElevenLabs counted them (`x-character-count`), else the input's.

    (`character-cost` is credits, which some models charge at a fraction of a character.)
    """
    try:
        return max(0, int(response.headers["x-character-count"]))
    except (KeyError, ValueError):
        return len(text)


def _check_audio(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith(("audio/", "application/octet-stream")):
        raise bad_response(f"expected audio, got {content_type.split(';')[0] or 'none'}")


async def _received(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive; a broken stream is an OpenAI error."""
    try:
        async for chunk in response.aiter_raw():
            if chunk:
                yield chunk
    except httpx.TimeoutException:
        raise timed_out() from None
    except httpx.TransportError:
        raise mid_stream_failure() from None


async def _encoded_from_pcm(
    chunks: AsyncIterator[bytes], response_format: SpeechFormat, rate: int, meter: SpeechMeter
) -> AsyncIterator[bytes]:
    """ElevenLabs' raw 16-bit PCM, encoded here piece by piece as OpenAI's format."""
    encoder = StreamEncoder(response_format, rate)
    carry = b""  # a sample split across two network chunks
    try:
        async for chunk in chunks:
            data = carry + chunk
            whole = len(data) - len(data) % 2
            carry = data[whole:]
            samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16, copy=False)
            encoded = encoder.encode(samples)
            meter.audio_seconds = encoder.seconds_out
            if encoded:
                yield encoded
        tail = encoder.finish()
        meter.audio_seconds = encoder.seconds_out
        if tail:
            yield tail
    finally:
        encoder.close()


# --- transcription -----------------------------------------------------------------------------

PROMPT_MODES = ("keyterms", "ignore")
KEYTERM_MAX_CHARACTERS = 49  # "less than 50"
KEYTERM_MAX_WORDS = 5
KEYTERM_FORBIDDEN = frozenset("<>{}[]\\")
PAUSE_SECONDS = 1.0  # a silence this long between two words starts a new segment
SENTENCE_ENDS = (".", "!", "?", "。", "！", "？")
# ElevenLabs answers ISO 639-3 codes; OpenAI's verbose_json names the language as Whisper
# does. Codes of Whisper's languages (plus Scribe's own "cmn" for Mandarin, "fil" for
# Filipino): 639-3 -> the Whisper code `language_name` knows.
_WHISPER_CODES_BY_ISO639_3: dict[str, str] = {
    "afr": "af", "amh": "am", "ara": "ar", "asm": "as", "aze": "az", "bak": "ba", "bel": "be",
    "bul": "bg", "ben": "bn", "bod": "bo", "bre": "br", "bos": "bs", "cat": "ca", "ces": "cs",
    "cym": "cy", "dan": "da", "deu": "de", "ell": "el", "eng": "en", "spa": "es", "est": "et",
    "eus": "eu", "fas": "fa", "fin": "fi", "fao": "fo", "fra": "fr", "glg": "gl", "guj": "gu",
    "hau": "ha", "haw": "haw", "heb": "he", "hin": "hi", "hrv": "hr", "hat": "ht", "hun": "hu",
    "hye": "hy", "ind": "id", "isl": "is", "ita": "it", "jpn": "ja", "jav": "jw", "kat": "ka",
    "kaz": "kk", "khm": "km", "kan": "kn", "kor": "ko", "lat": "la", "ltz": "lb", "lin": "ln",
    "lao": "lo", "lit": "lt", "lav": "lv", "mlg": "mg", "mri": "mi", "mkd": "mk", "mal": "ml",
    "mon": "mn", "mar": "mr", "msa": "ms", "mlt": "mt", "mya": "my", "nep": "ne", "nld": "nl",
    "nno": "nn", "nor": "no", "nob": "no", "oci": "oc", "pan": "pa", "pol": "pl", "pus": "ps",
    "por": "pt", "ron": "ro", "rus": "ru", "san": "sa", "snd": "sd", "sin": "si", "slk": "sk",
    "slv": "sl", "sna": "sn", "som": "so", "sqi": "sq", "srp": "sr", "sun": "su", "swe": "sv",
    "swa": "sw", "tam": "ta", "tel": "te", "tgk": "tg", "tha": "th", "tuk": "tk", "tgl": "tl",
    "fil": "tl", "tur": "tr", "tat": "tt", "ukr": "uk", "urd": "ur", "uzb": "uz", "vie": "vi",
    "yid": "yi", "yor": "yo", "zho": "zh", "cmn": "zh", "yue": "yue",
}  # fmt: skip


@dataclass(frozen=True)
class ScribeItem:
    """One entry of Scribe's `words`: a word, the spacing between words, or an audio event."""

    text: str
    type: str
    start: float
    end: float
    speaker_id: str | None
    logprob: float | None

    @classmethod
    def parse(cls, raw: Any) -> "ScribeItem":
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
            raise bad_response("a word without text")
        try:
            logprob = float(raw["logprob"]) if raw.get("logprob") is not None else None
            return cls(
                text=raw["text"],
                type=str(raw.get("type") or "word"),
                start=float(raw.get("start") or 0.0),
                end=float(raw.get("end") or 0.0),
                speaker_id=str(raw["speaker_id"]) if raw.get("speaker_id") is not None else None,
                logprob=logprob,
            )
        except (TypeError, ValueError):
            raise bad_response("a word with a malformed time or log-probability") from None

    @property
    def timed(self) -> bool:
        """Whether this item is heard (a word or an event) rather than spacing."""
        return self.type != "spacing"


def speaker_labels(items: list[ScribeItem]) -> dict[str, str]:
    """Scribe's speaker ids ("speaker_0" ...) -> "A", "B" ... in order of first word."""
    labels: dict[str, str] = {}
    for item in items:
        if item.timed and item.speaker_id is not None and item.speaker_id not in labels:
            labels[item.speaker_id] = speaker_label(len(labels))
    return labels


def _starts_segment(current: list[ScribeItem], item: ScribeItem, pause: float) -> bool:
    """Whether the heard `item` begins a new segment after the items in `current`."""
    heard = [i for i in current if i.timed]
    if not heard:
        return False
    last = heard[-1]
    return (
        item.speaker_id != last.speaker_id
        or item.start - last.end >= pause
        or last.text.rstrip().endswith(SENTENCE_ENDS)
        or "audio_event" in (item.type, last.type)  # "(laughter)" is a cue of its own
    )


def group_segments(items: list[ScribeItem], pause: float = PAUSE_SECONDS) -> list[list[ScribeItem]]:
    """Scribe's items cut into segments: one sentence, one speaker, no pause of `pause`
    seconds or more each, and each audio event alone."""
    groups: list[list[ScribeItem]] = []
    current: list[ScribeItem] = []
    for item in items:
        if item.timed and _starts_segment(current, item, pause):
            # The spacing before a word goes with it, as OpenAI's tokens carry their space.
            cut = len(current)
            while not current[cut - 1].timed:
                cut -= 1
            groups.append(current[:cut])
            current = current[cut:]
        current.append(item)
    if any(i.timed for i in current):
        groups.append(current)
    return groups


def segment_pause(job: TranscriptionJob) -> float:
    """The silence that ends a segment: a server_vad chunking_strategy's, else ours."""
    if isinstance(job.chunking_strategy, ServerVad):
        return job.chunking_strategy.silence_duration_ms / 1000
    return PAUSE_SECONDS


def group_speaker(group: list[ScribeItem]) -> str | None:
    """The speaker of a segment (all of its heard items share one)."""
    return next((i.speaker_id for i in group if i.timed), None)


def _compression_ratio(text: str) -> float:
    """Whisper's measure of repetition: the text's bytes over their zlib-compressed size."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _segment(index: int, items: list[ScribeItem], speaker: str | None, job: TranscriptionJob):
    heard = [i for i in items if i.timed]
    words = [i for i in heard if i.type == "word"]
    logprobs = [w.logprob for w in words if w.logprob is not None]
    text = " " + "".join(i.text for i in items).strip()  # Whisper's segments lead with a space
    return Segment(
        id=index,
        seek=0,
        start=heard[0].start,
        end=heard[-1].end,
        text=text,
        tokens=[],
        temperature=job.temperature,
        avg_logprob=sum(logprobs) / len(logprobs) if logprobs else 0.0,
        compression_ratio=_compression_ratio(text),
        no_speech_prob=0.0,
        words=[Word(w.text, w.start, w.end) for w in words],
        speaker=speaker,
        logprobs=word_logprobs(items) if job.include_logprobs else None,
    )


def word_logprobs(items: list[ScribeItem]) -> list[TokenLogprob]:
    """Each word with its log-probability, spacing folded into the word after it as
    OpenAI's tokens carry their leading space."""
    tokens = []
    spacing = ""
    for item in items:
        if item.type == "spacing":
            spacing += item.text
        elif item.type == "word" and item.logprob is not None:
            token = spacing + item.text
            tokens.append(TokenLogprob(token, item.logprob, list(token.encode())))
            spacing = ""
    return tokens


def language_of(code: Any, requested: str | None) -> str:
    """Scribe's detected language as verbose_json names it ("english")."""
    if not isinstance(code, str) or not code:
        return language_name(whisper_code(requested) or requested) if requested else ""
    code = code.lower()
    whisper = _WHISPER_CODES_BY_ISO639_3.get(code) or whisper_code(code) or code
    return language_name(whisper)


def scribe_keyterms(job: TranscriptionJob) -> list[str]:
    """The prompt's key terms that Scribe accepts (longer phrases are prose, not terms)."""
    return [
        term
        for term in job.prompt_terms()
        if len(term) <= KEYTERM_MAX_CHARACTERS
        and len(term.split()) <= KEYTERM_MAX_WORDS
        and not KEYTERM_FORBIDDEN.intersection(term)
    ]


def translation_refused() -> OpenAIError:
    return invalid_param(
        "This model transcribes in the language spoken; it does not translate to English. "
        "Use /v1/audio/transcriptions, or a model that translates.",
        param="model",
        code="unsupported_value",
    )


# --- the provider ------------------------------------------------------------------------------


class ElevenLabsProvider:
    """Synthesizer and Transcriber backed by one ElevenLabs model."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.client = client_for(catalog().upstreams[entry.upstream], ELEVENLABS)
        self.model = entry.target
        self._voices = {str(k): str(v) for k, v in self._table("voices", DEFAULT_VOICES).items()}
        self.voice_settings = self._table("voice_settings", {})
        self.tag_audio_events = bool(entry.options.get("tag_audio_events", False))
        # Key terms are Scribe v2's; Scribe v1 has none.
        default_prompt = "keyterms" if self.model.startswith("scribe_v2") else "ignore"
        self.prompt_as = str(entry.options.get("prompt_as", default_prompt))
        if self.prompt_as not in PROMPT_MODES:
            raise self._misconfigured("prompt_as", f"must be one of {PROMPT_MODES}")
        formats = {**DEFAULT_OUTPUT_FORMATS, **self._table("output_formats", {})}
        try:
            self._plans = {name: output_plan(name, str(fmt)) for name, fmt in formats.items()}
        except ValueError as exc:
            raise self._misconfigured("output_formats", str(exc)) from None

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

    # --- text to speech -----------------------------------------------------------------

    def voices(self) -> dict[str, str]:
        return dict(self._voices)

    def _speech_body(self, job: SpeechJob) -> dict[str, Any]:
        body: dict[str, Any] = {"text": job.input, "model_id": self.model}
        settings = dict(self.voice_settings)
        if job.speed != 1.0:
            low, high = SPEED_RANGE
            if not low <= job.speed <= high:
                raise _speed_refused(job.speed)
            settings["speed"] = job.speed
        if settings:
            body["voice_settings"] = settings
        return body

    async def synthesize(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        plan = self._plans[job.response_format]
        body = self._speech_body(job)
        voice_id = quote(self._voices[job.voice], safe="")
        response = await self.client.open(
            "POST",
            f"/v1/text-to-speech/{voice_id}/stream",
            params={"output_format": plan.output_format},
            json=body,
        )
        try:
            _check_audio(response)
            meter.characters = _billed_characters(response, job.input)
            chunks = _received(response)
            if plan.pcm_rate is not None:
                chunks = _encoded_from_pcm(chunks, job.response_format, plan.pcm_rate, meter)
            bytes_out = 0
            async for chunk in chunks:
                bytes_out += len(chunk)
                if job.response_format == "pcm" and plan.pcm_rate is None:
                    meter.audio_seconds = bytes_out / (OPENAI_PCM_RATE * 2)
                yield chunk
        finally:
            await response.aclose()

    # --- speech to text -----------------------------------------------------------------

    def _transcription_form(self, job: TranscriptionJob) -> dict[str, str]:
        form = {
            "model_id": self.model,
            "timestamps_granularity": "word",
            "diarize": "true" if job.diarize else "false",
            "tag_audio_events": "true" if self.tag_audio_events else "false",
        }
        if job.language:
            form["language_code"] = whisper_code(job.language) or job.language
        if job.temperature:
            form["temperature"] = str(job.temperature)
        if self.prompt_as == "keyterms" and (terms := scribe_keyterms(job)):
            form["keyterms"] = json.dumps(terms)  # one JSON array, as ElevenLabs' SDK sends it
        return form

    async def transcribe(self, job: TranscriptionJob) -> Transcript:
        if job.task == "translate":
            raise translation_refused()
        if job.known_speakers:
            raise invalid_param(
                "This model labels speakers A, B, ... itself; it cannot match them to "
                "known_speaker_names[] and their reference clips.",
                param="known_speaker_names[]",
                code="unsupported_value",
            )
        form = FormUpload(self._transcription_form(job), job.upload).request_kwargs()
        body = await self.client.json("POST", "/v1/speech-to-text", **form)
        return await self._transcript(body, job)

    async def _transcript(self, body: dict[str, Any], job: TranscriptionJob) -> Transcript:
        if not isinstance(body.get("text"), str):
            raise bad_response("no transcript text")
        raw_words = body.get("words") or []
        if not isinstance(raw_words, list):
            raise bad_response("words is not a list")
        items = [ScribeItem.parse(raw) for raw in raw_words]
        if not self.tag_audio_events:
            items = [i for i in items if i.type != "audio_event"]
        labels = speaker_labels(items) if job.diarize else {}
        segments = [
            _segment(n, group, labels.get(group_speaker(group)), job)
            for n, group in enumerate(group_segments(items, segment_pause(job)))
        ]
        words = None
        if job.word_timestamps:
            words = [Word(i.text, i.start, i.end) for i in items if i.type == "word"]
        return Transcript(
            text=body["text"],
            language=language_of(body.get("language_code"), job.language),
            duration=await self._duration(body, job, items),
            segments=segments,
            words=words,
            logprobs=word_logprobs(items) if job.include_logprobs else None,
        )

    async def _duration(
        self, body: dict[str, Any], job: TranscriptionJob, items: list[ScribeItem]
    ) -> float:
        """Seconds billed: ElevenLabs' `audio_duration_secs`, else the decoded upload, else
        (audio our decoder cannot read, a video ElevenLabs could) the last heard word's end."""
        reported = body.get("audio_duration_secs")
        if isinstance(reported, int | float) and math.isfinite(reported) and reported > 0:
            return float(reported)
        try:
            return await asyncio.to_thread(transcode.duration_of, job.upload.source)
        except OpenAIError:
            return max((i.end for i in items if i.timed), default=0.0)

    async def stream_transcription(
        self, job: TranscriptionJob
    ) -> AsyncIterator[Segment | Transcript]:
        # Scribe answers whole transcripts over HTTP; the router streams the segments.
        transcript = await self.transcribe(job)
        for segment in transcript.segments:
            yield segment
        yield transcript
