"""A model served by an OpenAI-compatible upstream (OpenAI, Groq, vLLM, another ARouter …).

The catalog entry names the upstream (`upstream = "NAME"`, an `[upstreams.NAME]` table)
and the upstream's own model name (`target`). One `UpstreamClient` per upstream holds the
connection pool, retries and cooldown; this class speaks each capability's endpoint:

- transcription/translation: multipart, asking for `verbose_json` (entry option
  `transcript_format = "json"` for upstreams that only answer text), `diarized_json` for
  speakers, `json` with `include[]=logprobs`; chunking_strategy and known speakers are
  passed on (the wire format is `openai_transcripts`). Uploads in a format the upstream
  does not accept are transcoded, uploads over its size limit or longer than the model
  takes (`max_duration_seconds`, the entry's option or its upstream table's: OpenAI's
  gpt-4o-transcribe takes 1,400 s) are cut at silences, transcribed concurrently and
  stitched into one transcript; diarized, the first piece goes alone and its speakers
  are sent with the others as known speakers, so every piece labels them alike. A
  streamed transcription is streamed by the upstream and relayed event by event (deltas
  with their logprobs, diarized `transcript.text.segment`s), or, cut into pieces or
  answered whole by an upstream that does not stream, sent segment by segment once
  transcribed;
- speech: the upstream's audio bytes are yielded as they arrive, never buffered whole;
- chat: text turns out, text deltas back from the upstream's SSE stream;
  `relay_chat`/`relay_chat_stream` pass a whole OpenAI body (audio included) through.

Usage comes from the upstream's usage object when it sends one, else it is computed
(decoded audio duration, characters, estimated tokens), so no call is billed at $0 by
accident.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
from httpx_sse import EventSource

from core.errors import OpenAIError
from gateway.audio import chunking, transcode
from gateway.audio.decode import declared_seconds
from gateway.catalog import CatalogError, ModelEntry, catalog
from gateway.providers.base import (
    AudioUpload,
    ChatJob,
    ChatReply,
    Segment,
    SpeechJob,
    SpeechMeter,
    Transcript,
    TranscriptionJob,
)
from gateway.providers.form_upload import FormUpload
from gateway.providers.openai_transcripts import (
    StreamReading,
    request_fields,
    response_format_for,
    transcript_from,
)
from gateway.providers.upstream_client import OPENAI, Dialect, bad_response, client_for, timed_out

OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
PCM_BYTES_PER_SECOND = 24_000 * 2
CHARS_PER_TOKEN = 4  # estimate when an upstream reports no usage
# Pieces stay this far under a model's longest audio: a header's duration may be an
# estimate, and an MP3 re-encoding adds a few milliseconds of padding.
DURATION_MARGIN = 0.98


def max_duration_of(entry: ModelEntry) -> float | None:
    """The longest audio the model takes (`max_duration_seconds`: the entry's option, else
    its upstream table's), or None when only the upload size limits it."""
    upstream = catalog().upstreams[entry.upstream]
    where = f'[models."{entry.id}"] options'
    value = entry.options.get("max_duration_seconds")
    if value is None:
        where, value = f"[upstreams.{upstream.name}]", upstream.options.get("max_duration_seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise CatalogError(
            f"{where}.max_duration_seconds: must be a positive number of seconds, not {value!r}"
        )
    return float(value)


def mid_stream_failure() -> OpenAIError:
    return OpenAIError(
        "The upstream provider's stream broke off before it finished.",
        status=502,
        code="upstream_stream_interrupted",
    )


class UpstreamProvider:
    """Transcriber, Synthesizer and ChatModel backed by one upstream model."""

    # How a vendor that speaks OpenAI's bodies differs at the HTTP level (Azure: its key
    # header, its routes): subclasses set `dialect` and override `endpoint`.
    dialect: Dialect = OPENAI

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.client = client_for(catalog().upstreams[entry.upstream], self.dialect)
        self.model = entry.target
        self.transcript_format = str(entry.options.get("transcript_format", "verbose_json"))
        self.max_duration = max_duration_of(entry)
        self._voices = tuple(entry.options.get("voices", OPENAI_VOICES))

    @property
    def label(self) -> str:
        return self.client.label

    def endpoint(self, path: str) -> str:
        """Where OpenAI's endpoint `path` ("/audio/speech" ...) is on this upstream."""
        return path

    # --- speech to text -----------------------------------------------------------------

    async def _sent_whole(self, upload: AudioUpload) -> bool:
        """Whether the upload goes as it is: a format the upstream takes, within its size
        and the model's longest audio."""
        options = self.client.options
        if upload.size > options.max_upload_bytes or not await self._takes_format(upload):
            return False
        return self.max_duration is None or await self._seconds(upload) <= self._piece_seconds()

    async def _takes_format(self, upload: AudioUpload) -> bool:
        accepted = self.client.options.accepted_formats
        if not accepted:  # every format: nothing to find out (FFmpeg may have to look)
            return True
        return (
            await asyncio.to_thread(transcode.format_of, upload.filename, upload.source) in accepted
        )

    async def _seconds(self, upload: AudioUpload) -> float:
        """The upload's duration: as its header declares it (cheap), else decoded."""
        declared = await asyncio.to_thread(declared_seconds, upload.source)
        if declared is not None:
            return declared
        return await asyncio.to_thread(transcode.duration_of, upload.source)

    def _piece_seconds(self) -> float:
        """The longest piece to send: within the upload size (as 16 kHz WAV) and duration."""
        size = (self.client.options.max_upload_bytes * 0.95 - 8192) / transcode.BYTES_PER_SECOND
        if self.max_duration is None:
            return size
        return min(size, self.max_duration * DURATION_MARGIN)

    async def transcribe(self, job: TranscriptionJob) -> Transcript:
        upload = job.upload
        if await self._sent_whole(upload):
            return await self._transcribe_file(job, upload)
        samples = await asyncio.to_thread(transcode.decode_mono16k, upload.source)
        duration = len(samples) / transcode.RATE
        cuts = chunking.plan_cuts(samples, transcode.RATE, self._piece_seconds())
        pieces = await self._transcribe_pieces(job, samples, cuts)
        stitched = chunking.stitch(pieces, duration)
        if job.include_logprobs:  # each piece's tokens, in the order the pieces play
            logprobs = [p for _, part in pieces for p in part.logprobs or []]
            stitched = replace(stitched, logprobs=logprobs)
        return stitched

    async def _transcribe_pieces(
        self, job: TranscriptionJob, samples: np.ndarray, cuts: list[tuple[int, int]]
    ) -> list[tuple[float, Transcript]]:
        """(start in seconds, transcript) of each piece, transcribed concurrently; diarized,
        the first alone first, so the others are sent its speakers (`speakers_heard`)."""
        options = self.client.options
        limiter = asyncio.Semaphore(options.chunk_concurrency)

        async def piece(job: TranscriptionJob, start: int, end: int) -> tuple[float, Transcript]:
            async with limiter:
                content, out_fmt = await asyncio.to_thread(
                    transcode.encode, samples[start:end], options.accepted_formats
                )
                part = AudioUpload(content, f"audio.{out_fmt}", transcode.CONTENT_TYPES[out_fmt])
                # Each piece is prompted with the caller's prompt; Whisper conditions on it.
                return start / transcode.RATE, await self._transcribe_file(job, part)

        if not job.diarize or len(cuts) == 1:
            return list(await asyncio.gather(*(piece(job, *cut) for cut in cuts)))
        first = await piece(job, *cuts[0])
        start, end = cuts[0]
        speakers = await asyncio.to_thread(
            chunking.speakers_heard,
            samples[start:end],
            first[1],
            job.known_speakers,
            options.accepted_formats,
        )
        later = replace(job, known_speakers=speakers)
        return [first, *await asyncio.gather(*(piece(later, *cut) for cut in cuts[1:]))]

    def _path(self, job: TranscriptionJob) -> str:
        path = "/audio/translations" if job.task == "translate" else "/audio/transcriptions"
        return self.endpoint(path)

    def _fields(self, job: TranscriptionJob) -> dict[str, Any]:
        return request_fields(job, self.model, response_format_for(job, self.transcript_format))

    async def _open_transcription(
        self, job: TranscriptionJob, upload: AudioUpload, data: dict[str, Any]
    ) -> httpx.Response:
        form = FormUpload(data, upload).request_kwargs()
        return await self.client.open("POST", self._path(job), **form)

    async def _transcribe_file(self, job: TranscriptionJob, upload: AudioUpload) -> Transcript:
        response = await self._open_transcription(job, upload, self._fields(job))
        try:
            await self._read_whole(response)
        finally:
            await response.aclose()
        return await self._transcript(self.client.parse_json(response), job, upload)

    async def _transcript(
        self, body: dict[str, Any], job: TranscriptionJob, upload: AudioUpload
    ) -> Transcript:
        transcript = transcript_from(body, job, self.entry.id, measured=None)
        if transcript.duration <= 0:
            # No duration from the upstream: measure it, so the call is never billed at $0.
            seconds = await asyncio.to_thread(transcode.duration_of, upload.source)
            transcript = replace(transcript, duration=seconds)
        return transcript

    async def stream_transcription(
        self, job: TranscriptionJob
    ) -> AsyncIterator[Segment | Transcript]:
        if job.task == "transcribe" and await self._sent_whole(job.upload):
            async for item in self._relayed_transcription(job):
                yield item
            return
        # Cut into pieces: the segments need every piece's answer.
        transcript = await self.transcribe(job)
        for segment in transcript.segments:
            yield segment
        yield transcript

    async def _relayed_transcription(
        self, job: TranscriptionJob
    ) -> AsyncIterator[Segment | Transcript]:
        """The upstream's own stream, event by event; a whole answer if it does not stream
        (OpenAI ignores `stream` for whisper-1)."""
        upload = job.upload
        # The done event reports tokens, not seconds: the audio's length is measured here.
        seconds = await asyncio.to_thread(transcode.duration_of, upload.source)
        data = {**self._fields(job), "stream": "true"}
        response = await self._open_transcription(job, upload, data)
        try:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                await self._read_whole(response)
                transcript = await self._transcript(self.client.parse_json(response), job, upload)
                for segment in transcript.segments:
                    yield segment
                yield transcript
                return
            reading = StreamReading(job, seconds)
            async for event in self._json_events(response):
                item = reading.read(event)
                if item is not None:
                    yield item
                if isinstance(item, Transcript):
                    return
            raise mid_stream_failure()  # the stream ended without transcript.text.done
        finally:
            await response.aclose()

    async def _read_whole(self, response: httpx.Response) -> None:
        try:
            await response.aread()
        except httpx.TimeoutException:
            raise timed_out() from None
        except httpx.TransportError:
            raise mid_stream_failure() from None

    # --- text to speech -----------------------------------------------------------------

    def voices(self) -> dict[str, str]:
        return {voice: voice for voice in self._voices}

    async def synthesize(self, job: SpeechJob, meter: SpeechMeter) -> AsyncIterator[bytes]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": job.input,
            "voice": job.voice,
            "response_format": job.response_format,
            "speed": job.speed,
        }
        if job.instructions:
            body["instructions"] = job.instructions
        response = await self.client.open("POST", self.endpoint("/audio/speech"), json=body)
        try:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith(("audio/", "application/octet-stream")):
                raise bad_response(f"expected audio, got {content_type.split(';')[0] or 'none'}")
            meter.characters = len(job.input)
            bytes_out = 0
            try:
                async for chunk in response.aiter_raw():
                    bytes_out += len(chunk)
                    if job.response_format == "pcm":
                        meter.audio_seconds = bytes_out / PCM_BYTES_PER_SECOND
                    yield chunk
            except httpx.TimeoutException:
                raise timed_out() from None
            except httpx.TransportError:
                raise mid_stream_failure() from None
        finally:
            await response.aclose()

    # --- chat ---------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        # The upstream's tokenizer is not ours to run; this estimate is used only when the
        # upstream reports no usage.
        return max(1, len(text) // CHARS_PER_TOKEN) if text else 0

    def _chat_body(self, job: ChatJob, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": turn.role, "content": turn.text} for turn in job.messages],
            "max_tokens": job.max_tokens,
            "temperature": job.temperature,
            "top_p": job.top_p,
        }
        if job.stop:
            body["stop"] = job.stop
        if job.seed is not None:
            body["seed"] = job.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _estimated_prompt_tokens(self, job: ChatJob) -> int:
        return sum(self.count_tokens(turn.text) + 4 for turn in job.messages)

    async def complete(self, job: ChatJob) -> ChatReply:
        body = await self.client.json(
            "POST", self.endpoint("/chat/completions"), json=self._chat_body(job, False)
        )
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise bad_response("no choices") from None
        usage = body.get("usage") or {}
        return ChatReply(
            text=text,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or self._estimated_prompt_tokens(job)),
            completion_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
        )

    async def stream(self, job: ChatJob) -> AsyncIterator[str | ChatReply]:
        parts: list[str] = []
        finish_reason = None
        usage: dict[str, Any] = {}
        async for event in self._sse("/chat/completions", self._chat_body(job, True)):
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    parts.append(delta)
                    yield delta
                finish_reason = choice.get("finish_reason") or finish_reason
        if finish_reason is None:
            raise mid_stream_failure()
        text = "".join(parts)
        yield ChatReply(
            text=text,
            finish_reason="length" if finish_reason == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or self._estimated_prompt_tokens(job)),
            completion_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
        )

    async def _sse(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The JSON events of an upstream SSE stream, as they arrive, until `[DONE]`."""
        response = await self.client.open("POST", self.endpoint(path), json=body)
        try:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise bad_response(f"expected an event stream, got {content_type.split(';')[0]}")
            async for event in self._json_events(response):
                yield event
        finally:
            await response.aclose()

    async def _json_events(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        """The JSON of each event of an SSE response as it arrives, up to `[DONE]`.

        Parsed as the SSE standard says (httpx-sse): LF, CR or CRLF line ends, multi-line
        data, comments and `event:` lines, so any server's framing reads the same. A body
        that ends before `[DONE]` broke off (a transcription stream is complete at its
        `transcript.text.done`, and its reader stops there).
        """
        try:
            async for event in EventSource(response).aiter_sse():
                if event.data == "[DONE]":
                    return
                try:
                    yield json.loads(event.data)
                except ValueError:
                    raise bad_response("malformed event") from None
        except httpx.TimeoutException:
            raise timed_out() from None
        except httpx.TransportError:
            raise mid_stream_failure() from None
        raise mid_stream_failure()  # the stream ended without its [DONE]

    # --- whole-body passthrough (audio chat) ----------------------------------------------

    async def relay_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send an OpenAI chat body as is (only `model` swapped); the upstream's JSON back."""
        return await self.client.json(
            "POST", self.endpoint("/chat/completions"), json=self._relayed(body)
        )

    def relay_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The upstream's chunks for a streamed chat body, as they arrive (up to [DONE])."""
        return self._sse("/chat/completions", self._relayed(body))

    def _relayed(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "model": self.model}
