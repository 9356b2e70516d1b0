"""A Transcript in each of OpenAI's response formats: json, text, srt, verbose_json, vtt,
diarized_json.

Shapes follow OpenAI's `CreateTranscriptionResponseJson` (with `logprobs` when the client
asked `include[]=logprobs`), `...VerboseJson`, `...DiarizedJson` and
`CreateTranslationResponseJson` schemas: transcriptions carry a duration `usage` object
(plus our `cost`), translations only what OpenAI's translation objects hold. A streamed
transcription ends with `transcript.text.done`, whose usage the spec gives only in tokens:
`token_usage` counts them.

diarized_json renders from any Transcript whose segments carry `speaker` (a diarizing
provider fills it); the stream of such a request sends `transcript.text.segment` events
built by `segment_event`.
"""

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from django.http import HttpResponse, JsonResponse

from core.errors import OpenAIError, invalid_param
from gateway.catalog import ModelEntry
from gateway.providers.base import Segment, TokenLogprob, Transcript, Word
from gateway.providers.upstream import CHARS_PER_TOKEN

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]
# Translations have no diarized_json (OpenAI's CreateTranslationRequest lists these five).
TRANSLATION_FORMATS: tuple[ResponseFormat, ...] = ("json", "text", "srt", "verbose_json", "vtt")
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = (*TRANSLATION_FORMATS, "diarized_json")
# A segment a diarizing provider left without a label (it heard no one it could tell
# apart there): the schema requires a string, and a made-up "A" would be a false claim.
UNLABELLED_SPEAKER = "unknown"
Task = Literal["transcribe", "translate"]
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
# For a model whose catalog entry gives no `audio_tokens_per_second`: Whisper's encoder
# turns each 30 s window into 1500 positions, 50 a second.
WHISPER_AUDIO_TOKENS_PER_SECOND = 50
# Token ids from here on are Whisper's special tokens (end of text, language, task and the
# timestamps segments begin and end with) in its multilingual vocabulary. The English-only
# vocabulary's start one lower, at its end-of-text token, which no segment holds.
WHISPER_FIRST_SPECIAL_TOKEN = 50257


def format_not_supported(model: str, response_format: str, instead: Sequence[str]) -> OpenAIError:
    """OpenAI's refusal of a response format the model cannot produce (its words: "...is
    not compatible with model 'X'. Use 'json' or 'text' instead.")."""
    quoted = [f"'{name}'" for name in instead]
    choices = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return invalid_param(
        f"response_format '{response_format}' is not compatible with model '{model}'. "
        f"Use {choices} instead.",
        param="response_format",
        code="unsupported_value",
    )


def cannot_diarize(model: str) -> OpenAIError:
    """For a provider that hears no speakers: diarized_json refused, not faked."""
    return format_not_supported(model, "diarized_json", TRANSLATION_FORMATS)


def logprobs_not_supported(model: str) -> OpenAIError:
    """For a provider that has no token log-probabilities to give for include[]=logprobs."""
    return invalid_param(
        f"include[] 'logprobs' is not compatible with model '{model}'.",
        param="include[]",
        code="unsupported_value",
    )


def billed_seconds(transcript: Transcript) -> int:
    """Seconds billed for a transcript: its audio, rounded up to the second as OpenAI does."""
    return math.ceil(round(transcript.duration, 3))


def duration_usage(seconds: int, cost: Decimal) -> dict[str, Any]:
    return {"type": "duration", "seconds": seconds, "cost": float(cost)}


def audio_tokens(transcript: Transcript, entry: ModelEntry) -> int:
    """Audio tokens heard: ceil(seconds of audio x the model's audio tokens per second)."""
    rate = float(entry.options.get("audio_tokens_per_second", WHISPER_AUDIO_TOKENS_PER_SECOND))
    return math.ceil(round(transcript.duration * rate, 3))


def text_tokens(transcript: Transcript) -> int:
    """Text tokens written: the ones Whisper decoded, without its special and timestamp
    tokens; for a transcript that came without token ids (an upstream answering `json`),
    an estimate of a token per four characters."""
    ids = [token for segment in transcript.segments for token in segment.tokens]
    if ids:
        return sum(1 for token in ids if token < WHISPER_FIRST_SPECIAL_TOKEN)
    return math.ceil(len(transcript.text) / CHARS_PER_TOKEN)


def token_usage(transcript: Transcript, entry: ModelEntry, cost: Decimal) -> dict[str, Any]:
    """The spec's token usage (`TranscriptTextUsageTokens`), plus our `cost`, which is
    still billed by the minute. The `prompt` is not counted: Whisper reads it, but it is
    not billed and no tokenizer here counts it for every model."""
    heard, written = audio_tokens(transcript, entry), text_tokens(transcript)
    return {
        "type": "tokens",
        "input_tokens": heard,
        "input_token_details": {"audio_tokens": heard},
        "output_tokens": written,
        "total_tokens": heard + written,
        "cost": float(cost),
    }


def timestamp(seconds: float, decimal_marker: str) -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def _cue_text(segment: Segment) -> str:
    # A blank line ends a cue in both formats, and "-->" would read as a timing line.
    lines = [line.strip() for line in segment.text.strip().splitlines() if line.strip()]
    return "\n".join(lines).replace("-->", "->")


def to_srt(transcript: Transcript) -> str:
    cues = []
    for number, segment in enumerate(transcript.segments, start=1):
        start, end = timestamp(segment.start, ","), timestamp(segment.end, ",")
        cues.append(f"{number}\n{start} --> {end}\n{_cue_text(segment)}\n\n")
    return "".join(cues)


def to_vtt(transcript: Transcript) -> str:
    cues = ["WEBVTT\n\n"]
    for segment in transcript.segments:
        start, end = timestamp(segment.start, "."), timestamp(segment.end, ".")
        cues.append(f"{start} --> {end}\n{_cue_text(segment)}\n\n")
    return "".join(cues)


def _segment_json(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "seek": segment.seek,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": segment.tokens,
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def _word_json(word: Word) -> dict[str, Any]:
    return {"word": word.word, "start": word.start, "end": word.end}


def logprobs_json(logprobs: list[TokenLogprob]) -> list[dict[str, Any]]:
    """OpenAI's `logprobs` items: `{token, logprob, bytes}` per token."""
    return [{"token": p.token, "logprob": p.logprob, "bytes": p.bytes} for p in logprobs]


def segment_id(segment: Segment) -> str:
    """A diarized segment's string id (OpenAI writes `seg_001`); deltas name it too."""
    return f"seg_{segment.id:03d}"


def segment_event(segment: Segment) -> dict[str, Any]:
    """One diarized segment: an item of diarized_json's `segments`, and the
    `transcript.text.segment` event of a diarized stream (the same object in the spec)."""
    return {
        "type": "transcript.text.segment",
        "id": segment_id(segment),
        "start": segment.start,
        "end": segment.end,
        "text": segment.text.strip(),
        "speaker": segment.speaker or UNLABELLED_SPEAKER,
    }


def to_diarized_json(transcript: Transcript, usage: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe",
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
        "segments": [segment_event(s) for s in transcript.segments],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def to_json(
    transcript: Transcript,
    response_format: ResponseFormat,
    task: Task,
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON body for `json`, `verbose_json` or `diarized_json` (usage only for
    transcriptions; `logprobs` in `json` when the transcript has them, i.e. was asked)."""
    if response_format == "diarized_json":
        return to_diarized_json(transcript, usage)
    if response_format == "json":
        body: dict[str, Any] = {"text": transcript.text}
        if transcript.logprobs is not None:
            body["logprobs"] = logprobs_json(transcript.logprobs)
    else:
        body = {
            "task": task,
            "language": transcript.language,
            "duration": round(transcript.duration, 3),
            "text": transcript.text,
            "segments": [_segment_json(s) for s in transcript.segments],
        }
        if transcript.words is not None:
            body["words"] = [_word_json(w) for w in transcript.words]
    if task == "transcribe" and usage is not None:
        body["usage"] = usage
    return body


def render(
    transcript: Transcript,
    response_format: ResponseFormat,
    task: Task,
    usage: dict[str, Any] | None = None,
) -> HttpResponse:
    """The HTTP response OpenAI gives for this transcript in `response_format`."""
    if response_format in ("json", "verbose_json", "diarized_json"):
        return JsonResponse(to_json(transcript, response_format, task, usage))
    if response_format == "text":
        body = transcript.text + "\n"
    elif response_format == "srt":
        body = to_srt(transcript)
    else:
        body = to_vtt(transcript)
    return HttpResponse(body, content_type=TEXT_CONTENT_TYPE)
