"""A Transcript in each of OpenAI's response formats: json, text, srt, verbose_json, vtt.

Shapes follow OpenAI's `CreateTranscriptionResponseJson`, `...VerboseJson` and
`CreateTranslationResponseJson` schemas: transcriptions carry a duration `usage` object
(plus our `cost`), translations only what OpenAI's translation objects hold. A streamed
transcription ends with `transcript.text.done`, whose usage the spec gives only in tokens:
`token_usage` counts them.
"""

import math
from decimal import Decimal
from typing import Any, Literal

from django.http import HttpResponse, JsonResponse

from gateway.catalog import ModelEntry
from gateway.providers.base import Segment, Transcript, Word
from gateway.providers.upstream import CHARS_PER_TOKEN

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("json", "text", "srt", "verbose_json", "vtt")
Task = Literal["transcribe", "translate"]
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
# For a model whose catalog entry gives no `audio_tokens_per_second`: Whisper's encoder
# turns each 30 s window into 1500 positions, 50 a second.
WHISPER_AUDIO_TOKENS_PER_SECOND = 50
# Token ids from here on are Whisper's special tokens (end of text, language, task and the
# timestamps segments begin and end with) in its multilingual vocabulary. The English-only
# vocabulary's start one lower, at its end-of-text token, which no segment holds.
WHISPER_FIRST_SPECIAL_TOKEN = 50257


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


def to_json(
    transcript: Transcript,
    response_format: ResponseFormat,
    task: Task,
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON body for `json` or `verbose_json` (usage only for transcriptions)."""
    if response_format == "json":
        body: dict[str, Any] = {"text": transcript.text}
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
    if response_format in ("json", "verbose_json"):
        return JsonResponse(to_json(transcript, response_format, task, usage))
    if response_format == "text":
        body = transcript.text + "\n"
    elif response_format == "srt":
        body = to_srt(transcript)
    else:
        body = to_vtt(transcript)
    return HttpResponse(body, content_type=TEXT_CONTENT_TYPE)
