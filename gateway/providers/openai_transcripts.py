"""OpenAI's transcription wire format, both ways, for providers that speak it upstream.

- `request_fields(job, model, response_format)`: the multipart fields of a transcription or
  translation request, the newer ones included: `include[]=logprobs`,
  `chunking_strategy` ("auto", or the server_vad object as one JSON string),
  `known_speaker_names[]` / `known_speaker_references[]`.
- `transcript_from(body, job, duration)`: a `json`, `verbose_json` or `diarized_json`
  answer as a Transcript (diarized segments' string ids become their position; their
  `speaker` is kept; `logprobs` read when asked). An answer that lacks what the job asked
  for (speakers, logprobs) is the upstream not producing that format: refused with
  OpenAI's 400 rather than passed on as if it were.
- `StreamReading`: a transcription SSE stream's events read into the Segment/Transcript
  items a Transcriber yields: `transcript.text.delta` (with its logprobs), diarized
  `transcript.text.segment`, `transcript.text.done`.
"""

import json
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.providers.base import (
    Segment,
    ServerVad,
    TokenLogprob,
    Transcript,
    TranscriptionJob,
    Word,
)
from gateway.providers.upstream_client import bad_response

# --- the request --------------------------------------------------------------------------


def response_format_for(job: TranscriptionJob, default: str) -> str:
    """What to ask the upstream for: diarized_json to hear speakers, json for logprobs
    (OpenAI gives them with json only), else the entry's usual format."""
    if job.diarize:
        return "diarized_json"
    if job.include_logprobs:
        return "json"
    return default


def chunking_field(strategy: str | ServerVad) -> str:
    if isinstance(strategy, ServerVad):
        return json.dumps(
            {
                "type": "server_vad",
                "prefix_padding_ms": strategy.prefix_padding_ms,
                "silence_duration_ms": strategy.silence_duration_ms,
                "threshold": strategy.threshold,
            }
        )
    return strategy


def request_fields(job: TranscriptionJob, model: str, response_format: str) -> dict[str, Any]:
    """The form fields (besides `file`) of the request for `job`; lists are sent as one
    field per item, as OpenAI's SDKs send arrays."""
    data: dict[str, Any] = {
        "model": model,
        "response_format": response_format,
        "temperature": str(job.temperature),
    }
    if job.prompt:
        data["prompt"] = job.prompt
    if job.task == "translate":
        return data
    if job.language:
        data["language"] = job.language
    if job.word_timestamps and response_format == "verbose_json":
        data["timestamp_granularities[]"] = ["segment", "word"]
    if job.include_logprobs:
        data["include[]"] = ["logprobs"]
    if job.chunking_strategy is not None:
        data["chunking_strategy"] = chunking_field(job.chunking_strategy)
    if job.known_speakers:
        data["known_speaker_names[]"] = [speaker.name for speaker in job.known_speakers]
        data["known_speaker_references[]"] = [s.reference for s in job.known_speakers]
    return data


# --- answers --------------------------------------------------------------------------------


def _position(raw_id: Any, index: int) -> int:
    """A segment's number: verbose_json's integer id, else (diarized `seg_001`) its place."""
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        return raw_id
    return index


def segment_from(raw: dict[str, Any], index: int, temperature: float) -> Segment:
    speaker = raw.get("speaker")
    return Segment(
        id=_position(raw.get("id"), index),
        seek=int(raw.get("seek", 0)),
        start=float(raw.get("start", 0.0)),
        end=float(raw.get("end", 0.0)),
        text=str(raw.get("text", "")),
        tokens=list(raw.get("tokens") or []),
        temperature=float(raw.get("temperature", temperature)),
        avg_logprob=float(raw.get("avg_logprob", 0.0)),
        compression_ratio=float(raw.get("compression_ratio", 0.0)),
        no_speech_prob=float(raw.get("no_speech_prob", 0.0)),
        words=[word_from(w) for w in raw.get("words") or []],
        speaker=str(speaker) if speaker is not None else None,
    )


def word_from(raw: dict[str, Any]) -> Word:
    return Word(
        word=str(raw.get("word", raw.get("text", ""))),
        start=float(raw.get("start", 0.0)),
        end=float(raw.get("end", 0.0)),
    )


def logprobs_from(raw: Any) -> list[TokenLogprob]:
    if not isinstance(raw, list):
        raise bad_response("logprobs is not a list")
    logprobs = []
    for item in raw:
        if not isinstance(item, dict) or "logprob" not in item:
            raise bad_response("a logprobs item without its logprob")
        token = str(item.get("token", ""))
        raw_bytes = item.get("bytes")
        token_bytes = [int(b) for b in raw_bytes] if raw_bytes is not None else [*token.encode()]
        logprobs.append(TokenLogprob(token, float(item["logprob"]), token_bytes))
    return logprobs


def check_answers_job(body: dict[str, Any], job: TranscriptionJob, model: str) -> None:
    """Refuse an answer that ignored what the job asked: an upstream that answers
    diarized_json without speakers, or include[]=logprobs without them, cannot produce it."""
    # Here, not at the top: gateway.transcripts imports the upstream provider, which
    # imports this module.
    from gateway.transcripts import cannot_diarize, logprobs_not_supported

    if job.diarize:
        segments = body.get("segments")
        if not isinstance(segments, list) or any(
            not isinstance(s, dict) or "speaker" not in s for s in segments
        ):
            raise cannot_diarize(model)
    if job.include_logprobs and "logprobs" not in body:
        raise logprobs_not_supported(model)


def transcript_from(
    body: dict[str, Any], job: TranscriptionJob, model: str, measured: float | None
) -> Transcript:
    """The Transcript of an answer; `measured`: the audio's decoded length, used when the
    answer gives no duration (a `json` answer), so no call is billed at $0."""
    if "text" not in body:
        raise bad_response("no transcript text")
    check_answers_job(body, job, model)
    try:
        return _transcript(body, job, measured)
    except (TypeError, ValueError, AttributeError):
        raise bad_response("a malformed transcript") from None


def _transcript(body: dict[str, Any], job: TranscriptionJob, measured: float | None) -> Transcript:
    segments = [
        segment_from(raw, i, job.temperature) for i, raw in enumerate(body.get("segments") or [])
    ]
    words = [word_from(w) for w in body["words"]] if body.get("words") is not None else None
    language = str(body.get("language") or job.language or "")
    if job.task == "translate":
        language = "english"
    return Transcript(
        text=str(body["text"]),
        language=language,
        duration=float(duration_of(body) or measured or 0.0),
        segments=segments,
        words=words,
        logprobs=logprobs_from(body["logprobs"]) if job.include_logprobs else None,
    )


def duration_of(body: dict[str, Any]) -> float | None:
    """The duration an answer states: its `duration`, else a duration usage's seconds."""
    if body.get("duration") is not None:
        return float(body["duration"])
    usage = body.get("usage") or {}
    if usage.get("type") == "duration" and usage.get("seconds") is not None:
        return float(usage["seconds"])
    return None


# --- stream events ------------------------------------------------------------------------


@dataclass
class StreamReading:
    """A transcription stream's events, turned into what a Transcriber yields.

    A plain stream's deltas are yielded as they come, each as a Segment carrying the
    delta (no timing of its own: it ends at `seconds`, the audio's length, which is what
    a client leaving early is billed for, as the upstream bills it). A diarized stream's
    deltas are gathered by `segment_id` and yielded with their `transcript.text.segment`
    (speaker, start, end), the router then sending that segment's delta and event.
    """

    job: TranscriptionJob
    seconds: float
    segments: list[Segment] = field(default_factory=list)
    deltas: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    _pending: dict[str, list[TokenLogprob]] = field(default_factory=dict)

    def read(self, event: dict[str, Any]) -> Segment | Transcript | None:
        """The item `event` yields, if any (a Transcript: the stream is done)."""
        try:
            return self._read(event)
        except (TypeError, ValueError, AttributeError):
            raise bad_response("a malformed stream event") from None

    def _read(self, event: dict[str, Any]) -> Segment | Transcript | None:
        kind = event.get("type")
        if kind == "transcript.text.delta":
            return self._delta(event)
        if kind == "transcript.text.segment":
            return self._segment(event)
        if kind == "transcript.text.done":
            return self._done(event)
        return None  # events this gateway does not relay (none others are specified)

    def _delta(self, event: dict[str, Any]) -> Segment | None:
        logprobs = logprobs_from(event["logprobs"]) if "logprobs" in event else []
        self.logprobs.extend(logprobs)
        if self.job.diarize:
            self._pending.setdefault(str(event.get("segment_id")), []).extend(logprobs)
            return None
        self.deltas += 1
        return _bare_segment(
            self.deltas - 1, str(event.get("delta", "")), self.seconds, self.job, logprobs
        )

    def _segment(self, event: dict[str, Any]) -> Segment | None:
        if not self.job.diarize:
            return None
        segment = segment_from(event, len(self.segments), self.job.temperature)
        if self.job.include_logprobs:
            segment = _with_logprobs(segment, self._pending.pop(str(event.get("id")), []))
        self.segments.append(segment)
        return segment

    def _done(self, event: dict[str, Any]) -> Transcript:
        if "text" not in event:
            raise bad_response("transcript.text.done without its text")
        logprobs = None
        if self.job.include_logprobs:
            logprobs = logprobs_from(event["logprobs"]) if "logprobs" in event else self.logprobs
        return Transcript(
            text=str(event["text"]),
            language=self.job.language or "",
            duration=self.seconds,
            segments=self.segments,
            logprobs=logprobs,
        )


def _bare_segment(
    index: int, text: str, seconds: float, job: TranscriptionJob, logprobs: list[TokenLogprob]
) -> Segment:
    return Segment(
        id=index,
        seek=0,
        start=seconds,
        end=seconds,
        text=text,
        tokens=[],
        temperature=job.temperature,
        avg_logprob=0.0,
        compression_ratio=0.0,
        no_speech_prob=0.0,
        logprobs=logprobs if job.include_logprobs else None,
    )


def _with_logprobs(segment: Segment, logprobs: list[TokenLogprob]) -> Segment:
    return replace(segment, logprobs=logprobs)
