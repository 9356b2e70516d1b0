"""Speech to text by AssemblyAI's pre-recorded API: upload, submit, poll, read, delete.

A catalog entry routes an OpenAI transcription model id here; the client still speaks
OpenAI's API. Example (AssemblyAI's prices are per hour: $0.21 for Universal-3 Pro):

    [upstreams.assemblyai]
    base_url = "https://api.assemblyai.com"   # EU data residency: https://api.eu.assemblyai.com
    api_key_env = "ASSEMBLYAI_API_KEY"
    request_timeout = 600                     # longest wait for a transcript (and for each call)

    [models."assemblyai/universal-3-pro"]
    kind = "transcription"
    provider = "assemblyai"
    upstream = "assemblyai"
    target = "universal-3-pro"                # AssemblyAI's `speech_models`, first choice
    price = { per_audio_minute = 0.0035 }
    # Universal-3 Pro hears six languages; AssemblyAI routes others to Universal-2.
    options = { fallback_speech_models = ["universal-2"] }

One transcription is four calls, each through the shared upstream client (pooled
connections, retries on 429/5xx, cooldown, a team's own key, errors as OpenAI envelopes):
`POST /v2/upload` (the raw bytes, a spilled upload streamed from its file), `POST
/v2/transcript`, `GET /v2/transcript/{id}` from right away with a doubling pause (entry
options `poll_interval`, 0.2 s, up to `max_poll_interval`, 2 s) until it is completed or
failed, within the upstream's `request_timeout` (else OpenAI's 504), then `DELETE
/v2/transcript/{id}`. AssemblyAI keeps transcripts (30 days by default) and the upload
goes with its transcript, so the gateway deletes each one once read, failed or given up
on, in the background after answering; `delete_transcripts = false` keeps them.

Request mapping: `language` → `language_code`, none → `language_detection`; the
diarized formats → `speaker_labels`, with known speaker names → speaker identification by
name (AssemblyAI infers who is who from what is said; reference clips cannot be used);
the `prompt` becomes `keyterms_prompt` (its comma-, semicolon- or line-separated phrases
of up to six words; entry option `prompt_as = "prompt"` sends it as Universal-3 Pro's
instruction prompt instead, "ignore" drops it). `temperature` is not sent: only Universal-3
Pro takes one, and Whisper's meaning of it differs.

Response mapping: segments are the transcript's sentences (cut at sentence ends, at most
30 s), each of a diarized transcript within one utterance and labelled with its speaker
("A", "B", ... or the identified name); words and times come in milliseconds and go out in
seconds; a segment's `avg_logprob` is the mean log of its words' confidences. Usage is
`audio_duration`, AssemblyAI's billing unit (measured here if missing). Translations and
`include[]=logprobs` are refused with OpenAI's 400; `stream=true` gets the finished
transcript's segments as stream events once AssemblyAI is done (it does not stream
pre-recorded audio). A transcript that ends in status "error" is a 400 with AssemblyAI's
message when the audio is at fault, else a 502.
"""

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from core.errors import UPSTREAM, OpenAIError, invalid_param
from gateway.audio import transcode
from gateway.audio.languages import language_name, whisper_code
from gateway.catalog import CatalogError, ModelEntry, catalog
from gateway.providers.attempts import AttemptLog, current_attempt_log, start_attempt_log
from gateway.providers.base import Segment, Transcript, TranscriptionJob, Word
from gateway.providers.upstream_client import Dialect, bad_response, client_for, timed_out

logger = logging.getLogger(__name__)


def _auth_headers(key: str) -> dict[str, str]:
    return {"authorization": key}  # the bare key: AssemblyAI takes no "Bearer"


# Error bodies are `{"error": "message"}`, which the OpenAI parser already reads.
ASSEMBLYAI = Dialect(auth_headers=_auth_headers)

UPLOAD_CHUNK = 64 * 1024
PROMPT_MODES = ("keyterms", "prompt", "ignore")
MAX_KEYTERMS = 200  # Universal-2's limit (Universal-3 Pro takes 1,000)
MAX_KEYTERM_WORDS = 6
MAX_SEGMENT_SECONDS = 30.0
SENTENCE_END = re.compile(r"[.?!…][\"'”’)\]]*$")
# Failed transcripts whose `error` is AssemblyAI's own trouble (or the upload it could not
# fetch), not the audio's: a 502, not the client's 400.
SERVER_SIDE_ERRORS = ("server error", "internal", "download error")
PENDING = ("queued", "processing")

# Background deletions, held so they are not collected before they finish.
_deletions: set[asyncio.Task] = set()


@dataclass(frozen=True)
class HeardWord:
    """One word of AssemblyAI's answer, in seconds."""

    text: str
    start: float
    end: float
    confidence: float


class _RewindingFile:
    """A spilled upload as a request body: httpx reads it in 64 KB pieces, and every
    iteration starts from the top, so a retried upload is sent whole again."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(UPLOAD_CHUNK):
            yield chunk


def keyterms(prompt: str) -> list[str]:
    """The client's prompt as AssemblyAI keyterms: its comma-, semicolon- or line-separated
    phrases of at most six words. Prose has none, so a prose prompt boosts nothing."""
    phrases = (phrase.strip(" \t.!?:\"'") for phrase in re.split(r"[,;\n]", prompt))
    terms = [p for p in phrases if p and len(p.split()) <= MAX_KEYTERM_WORDS]
    return list(dict.fromkeys(terms))[:MAX_KEYTERMS]


def _heard_words(raw: list[Any] | None) -> list[HeardWord]:
    words = []
    for item in raw or []:
        if not isinstance(item, dict):
            raise bad_response("malformed words")
        words.append(
            HeardWord(
                text=str(item.get("text", "")),
                start=float(item.get("start") or 0) / 1000,
                end=float(item.get("end") or 0) / 1000,
                confidence=float(item.get("confidence") or 0.0),
            )
        )
    return words


def _sentences(words: list[HeardWord]) -> Iterator[list[HeardWord]]:
    """Words grouped into sentences, none longer than MAX_SEGMENT_SECONDS."""
    group: list[HeardWord] = []
    for word in words:
        if group and word.end - group[0].start > MAX_SEGMENT_SECONDS:
            yield group
            group = []
        group.append(word)
        if SENTENCE_END.search(word.text):
            yield group
            group = []
    if group:
        yield group


def _mean_log_confidence(words: list[HeardWord]) -> float:
    if not words:
        return 0.0
    return sum(math.log(max(word.confidence, 1e-6)) for word in words) / len(words)


class AssemblyAIProvider:
    """Transcriber backed by AssemblyAI's pre-recorded speech-to-text."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.client = client_for(catalog().upstreams[entry.upstream], ASSEMBLYAI)
        options = entry.options
        fallbacks = options.get("fallback_speech_models", [])
        if not isinstance(fallbacks, list):
            raise CatalogError(f"{entry.id}: fallback_speech_models must be a list of names")
        self.speech_models = [entry.target, *map(str, fallbacks)]
        self.prompt_as = str(options.get("prompt_as", "keyterms"))
        if self.prompt_as not in PROMPT_MODES:
            raise CatalogError(f"{entry.id}: prompt_as must be one of {PROMPT_MODES}")
        self.delete_transcripts = bool(options.get("delete_transcripts", True))
        self.poll_interval = float(options.get("poll_interval", 0.2))
        self.max_poll_interval = float(options.get("max_poll_interval", 2.0))

    @property
    def label(self) -> str:
        return self.client.label

    # --- the Transcriber interface --------------------------------------------------------

    async def transcribe(self, job: TranscriptionJob) -> Transcript:
        self._refuse_what_cannot_be_done(job)
        with self._one_attempt():
            audio_url = await self._upload(job)
            transcript_id = await self._submit(job, audio_url)
            try:
                body = await self._finished(transcript_id)
            finally:
                if self.delete_transcripts:
                    self._delete_later(transcript_id)
            if body["status"] == "error":
                raise self._job_failed(str(body.get("error") or ""), audio_url)
            return await self._transcript(body, job)

    async def stream_transcription(
        self, job: TranscriptionJob
    ) -> AsyncIterator[Segment | Transcript]:
        # AssemblyAI does not stream pre-recorded audio: the finished transcript's
        # segments go out as stream events, then the whole transcript.
        transcript = await self.transcribe(job)
        for segment in transcript.segments:
            yield segment
        yield transcript

    def _refuse_what_cannot_be_done(self, job: TranscriptionJob) -> None:
        if job.task == "translate":
            raise invalid_param(
                f"The model `{self.entry.id}` cannot translate; use a Whisper model for "
                "/v1/audio/translations.",
                param="model",
                code="model_not_supported",
            )
        if job.include_logprobs:
            # AssemblyAI has word confidences, not token log-probabilities: refused, not faked.
            raise invalid_param(
                f"include[] 'logprobs' is not compatible with model '{self.entry.id}'.",
                param="include[]",
                code="unsupported_value",
            )

    # --- the four calls -------------------------------------------------------------------

    async def _upload(self, job: TranscriptionJob) -> str:
        upload = job.upload
        headers = {"content-type": "application/octet-stream"}
        with upload.opened() as source:
            if isinstance(source, bytes):
                content: bytes | _RewindingFile = source
            else:
                content = _RewindingFile(source)
                headers["content-length"] = str(upload.size)
            body = await self.client.json("POST", "/v2/upload", content=content, headers=headers)
        audio_url = body.get("upload_url")
        if not isinstance(audio_url, str) or not audio_url:
            raise bad_response("no upload_url")
        return audio_url

    async def _submit(self, job: TranscriptionJob, audio_url: str) -> str:
        body = await self.client.json("POST", "/v2/transcript", json=self._request(job, audio_url))
        transcript_id = body.get("id")
        if not isinstance(transcript_id, str) or not transcript_id:
            raise bad_response("no transcript id")
        return transcript_id

    def _request(self, job: TranscriptionJob, audio_url: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "audio_url": audio_url,
            "speech_models": self.speech_models,
            "punctuate": True,
            "format_text": True,
        }
        if job.language:
            request["language_code"] = whisper_code(job.language) or job.language.strip()
        else:
            request["language_detection"] = True
        if job.diarize or job.known_speakers:
            request["speaker_labels"] = True
        if job.known_speakers:
            identification = {
                "speaker_type": "name",
                "known_values": [speaker.name for speaker in job.known_speakers],
            }
            request["speech_understanding"] = {
                "request": {"speaker_identification": identification}
            }
        if job.prompt and self.prompt_as == "prompt":
            request["prompt"] = job.prompt
        elif job.prompt and self.prompt_as == "keyterms" and (terms := keyterms(job.prompt)):
            request["keyterms_prompt"] = terms
        return request

    async def _finished(self, transcript_id: str) -> dict[str, Any]:
        """The transcript once completed or failed, polled from right away with a pause
        that doubles up to `max_poll_interval`, within the upstream's request_timeout."""
        pause = self.poll_interval
        try:
            async with asyncio.timeout(self.client.options.request_timeout):
                while True:
                    body = await self.client.json("GET", f"/v2/transcript/{transcript_id}")
                    status = body.get("status")
                    if status in ("completed", "error"):
                        return body
                    if status not in PENDING:
                        raise bad_response(f"unknown transcript status {status!r}")
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, self.max_poll_interval)
        except TimeoutError:
            current_attempt_log().add(self.label, "timeout")
            raise timed_out() from None

    def _delete_later(self, transcript_id: str) -> None:
        """Delete the transcript (and its upload) without keeping the client waiting."""
        team_id = current_attempt_log().team_id
        task = asyncio.get_running_loop().create_task(self._delete(transcript_id, team_id))
        _deletions.add(task)
        task.add_done_callback(_deletions.discard)

    async def _delete(self, transcript_id: str, team_id: int | None) -> None:
        # Its own attempt log: the request's row is written, or being written, already.
        start_attempt_log(team_id=team_id)
        try:
            await self.client.request("DELETE", f"/v2/transcript/{transcript_id}")
        except OpenAIError as exc:
            logger.warning(
                "upstream %s: transcript %s was not deleted (%s)",
                self.client.name,
                transcript_id,
                exc.code or exc.status,
            )

    # --- answers --------------------------------------------------------------------------

    def _job_failed(self, message: str, audio_url: str) -> OpenAIError:
        message = self.client.scrub(message).replace(audio_url, "[upload]")
        if not message or any(sign in message.lower() for sign in SERVER_SIDE_ERRORS):
            return OpenAIError(
                "The upstream provider failed to transcribe the audio.",
                status=502,
                type=UPSTREAM,
                code="upstream_error",
            )
        about_the_audio = any(word in message.lower() for word in ("audio", "file"))
        return invalid_param(message, param="file" if about_the_audio else None)

    async def _transcript(self, body: dict[str, Any], job: TranscriptionJob) -> Transcript:
        words = _heard_words(body.get("words"))
        utterances = body.get("utterances") if job.diarize or job.known_speakers else None
        if utterances:
            segments = self._diarized_segments(utterances, job.temperature)
        else:
            segments = self._segments(_sentences(words), None, job.temperature)
        duration = body.get("audio_duration")
        if not isinstance(duration, int | float) or duration <= 0:
            # Never billed at $0: measure what AssemblyAI did not report.
            duration = await asyncio.to_thread(transcode.duration_of, job.upload.source)
        text = str(body.get("text") or "")
        if not segments and text:
            segments = [self._segment(0, text, 0.0, float(duration), [], None, job.temperature)]
        return Transcript(
            text=text,
            language=self._language(body, job),
            duration=float(duration),
            segments=segments,
            words=[Word(w.text, w.start, w.end) for w in words] if job.word_timestamps else None,
        )

    def _diarized_segments(self, utterances: list[Any], temperature: float) -> list[Segment]:
        segments: list[Segment] = []
        for utterance in utterances:
            if not isinstance(utterance, dict):
                raise bad_response("malformed utterances")
            speaker = str(utterance.get("speaker") or "") or None
            groups = _sentences(_heard_words(utterance.get("words")))
            segments += self._segments(groups, speaker, temperature, first_id=len(segments))
        return segments

    def _segments(
        self,
        groups: Iterator[list[HeardWord]],
        speaker: str | None,
        temperature: float,
        first_id: int = 0,
    ) -> list[Segment]:
        return [
            self._segment(
                first_id + i,
                " ".join(word.text for word in words),
                words[0].start,
                words[-1].end,
                words,
                speaker,
                temperature,
            )
            for i, words in enumerate(groups)
        ]

    @staticmethod
    def _segment(
        index: int,
        text: str,
        start: float,
        end: float,
        words: list[HeardWord],
        speaker: str | None,
        temperature: float,
    ) -> Segment:
        return Segment(
            id=index,
            seek=0,
            start=start,
            end=end,
            # Whisper's convention, which the stream's deltas rely on: a leading space.
            text=" " + text.strip(),
            tokens=[],
            temperature=temperature,
            avg_logprob=_mean_log_confidence(words),
            compression_ratio=0.0,
            no_speech_prob=0.0,
            words=[Word(w.text, w.start, w.end) for w in words],
            speaker=speaker,
        )

    @staticmethod
    def _language(body: dict[str, Any], job: TranscriptionJob) -> str:
        """OpenAI names the language ("english"); AssemblyAI answers a code ("en_us")."""
        code = str(body.get("language_code") or job.language or "")
        known = whisper_code(code) if code else None
        return language_name(known) if known else code

    # --- the attempt log --------------------------------------------------------------------

    @contextlib.contextmanager
    def _one_attempt(self) -> Iterator[None]:
        """Upload, submit and polls are one try of this provider in the request's attempt
        log, as one OpenAI request is: a clean transcription shows one "ok", not one per
        HTTP call, while every retry and failure of any of them still shows."""
        log = current_attempt_log()
        start = len(log.attempts)
        try:
            yield
        except BaseException:
            self._fold(log, start, "error")
            raise
        self._fold(log, start, "ok")

    def _fold(self, log: AttemptLog, start: int, outcome: str) -> None:
        calls = log.attempts[start:]
        del log.attempts[start:]
        log.attempts.extend(call for call in calls if call.outcome != "ok")
        if outcome == "ok" or not log.attempts[start:] or log.attempts[-1] is not calls[-1]:
            # Success, or a failure no HTTP call recorded (a failed transcript, a bad body).
            log.add(self.label, outcome)
