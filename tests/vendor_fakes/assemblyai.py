"""A fake AssemblyAI on loopback: pre-recorded speech to text (upload, transcript, poll, delete).

Written from AssemblyAI's public API reference:
  https://www.assemblyai.com/docs/api-reference/files/upload          (POST /v2/upload)
  https://www.assemblyai.com/docs/api-reference/transcripts/submit    (POST /v2/transcript)
  https://www.assemblyai.com/docs/api-reference/transcripts/get       (GET /v2/transcript/{id})
  https://www.assemblyai.com/docs/api-reference/transcripts/delete    (DELETE /v2/transcript/{id})
  https://www.assemblyai.com/docs/pre-recorded-audio/select-the-speech-model  (speech_models)
  https://www.assemblyai.com/docs/pre-recorded-audio/transcript-status
  https://www.assemblyai.com/docs/pre-recorded-audio/delete-transcripts
  https://www.assemblyai.com/docs/speech-understanding/speaker-identification
  https://www.assemblyai.com/docs/guides/common_errors_and_solutions  (error messages)
  https://www.assemblyai.com/openapi.yml, also github.com/AssemblyAI/assemblyai-api-spec
    openapi.yml (TranscriptParams, Transcript, TranscriptWord, TranscriptUtterance, Error)

A real HTTP/1.1 server (tests/vendor_fakes/loopback.py: uvicorn in a thread). It checks
the bare `Authorization: <key>` header (401 with AssemblyAI's message otherwise), the
raw octet-stream upload, the transcript request against the schema's rules (known fields
only, `speech_models` required, `language_code` or `language_detection` not both,
`prompt` or `keyterms_prompt` not both, keyterms of at most six words, speaker
identification only with `speaker_labels`), and that a transcript is read with the key
that made it. Each transcript is `queued`, then `processing`, then `completed` (a
scripted conversation laid over the audio's real duration, measured by decoding it) over
`polls_before_done` further polls; audio it cannot decode ends in `error` with
AssemblyAI's message. DELETE blanks the transcript as AssemblyAI does ("Deleted by user.").
Error bodies are AssemblyAI's `{"error": "message"}`.

The first path element picks a behaviour (`http://127.0.0.1:PORT/<scenario>/v2/...`):
  ok            as AssemblyAI answers
  limited-once  429 with Retry-After: 1 on the first request (the upload), then as ok
  fail-once     500 on the first request, then as ok;  fail: 500 always
  job-error     the transcript ends in "error" with AssemblyAI's server-error message
  stuck         the transcript stays "processing"
  no-duration   a completed transcript whose `audio_duration` is null
"""

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av

from tests.vendor_fakes.loopback import LoopbackServer, Request, Response, json_response

API_KEY = "aai-fake-key-1234"
# (speaker, what they say): laid over the audio, one utterance each, in equal slices.
SCRIPT: tuple[tuple[str, str], ...] = (
    ("A", "Hello, thanks for calling Acme support."),
    ("B", "Hi! I have a question about my order."),
    ("A", "Of course, go ahead."),
)
MIN_AUDIO_SECONDS = 0.16  # "The minimum audio duration for a file submitted to our API is 160ms."
MAX_KEYTERMS = 1000
MAX_KEYTERM_WORDS = 6
# TranscriptOptionalParams' properties plus audio_url (the schema allows no others).
TRANSCRIPT_PARAMS = {
    "audio_url", "audio_end_at", "audio_start_from", "auto_chapters", "auto_highlights",
    "content_safety", "content_safety_confidence", "custom_spelling", "disfluencies",
    "entity_detection", "filter_profanity", "format_text", "iab_categories", "keyterms_prompt",
    "language_code", "language_codes", "language_confidence_threshold", "language_detection",
    "language_detection_options", "multichannel", "prompt", "punctuate", "redact_pii",
    "redact_pii_audio", "redact_pii_audio_options", "redact_pii_audio_quality",
    "redact_pii_policies", "redact_pii_sub", "sentiment_analysis", "speaker_labels",
    "speaker_options", "speakers_expected", "speech_models", "speech_threshold",
    "speech_understanding", "summarization", "summary_model", "summary_type",
    "remove_audio_tags", "temperature", "webhook_auth_header_name",
    "webhook_auth_header_value", "webhook_url", "custom_topics", "speech_model", "topics",
}  # fmt: skip
SPEECH_MODELS = {"universal-3-pro", "universal-2", "universal", "slam-1", "best", "nano"}
LANGUAGE_CODES = {
    "en", "en_au", "en_uk", "en_us", "es", "fr", "de", "it", "pt", "nl", "af", "sq", "am", "ar",
    "hy", "as", "az", "ba", "eu", "be", "bn", "bs", "br", "bg", "my", "ca", "zh", "hr", "cs",
    "da", "et", "fo", "fi", "gl", "ka", "el", "gu", "ht", "ha", "haw", "he", "hi", "hu", "is",
    "id", "ja", "jw", "kn", "kk", "km", "ko", "lo", "la", "lv", "ln", "lt", "lb", "mk", "mg",
    "ms", "ml", "mt", "mi", "mr", "mn", "ne", "no", "nn", "oc", "pa", "ps", "fa", "pl", "ro",
    "ru", "sa", "sr", "sn", "sd", "si", "sk", "sl", "so", "su", "sw", "sv", "tl", "tg", "ta",
    "tt", "te", "th", "bo", "tr", "tk", "uk", "ur", "uz", "vi", "cy", "yi", "yo",
}  # fmt: skip
UNAUTHORIZED = "Authentication error, API token missing/invalid"
NOT_FOUND = "Transcript lookup error, transcript id not found"
SERVER_ERROR = "Server error, developers have been alerted."


def audio_seconds(content: bytes) -> float | None:
    """The audio's real duration by decoding it, or None when it is not audio."""
    try:
        samples, rate = 0, 16000
        with av.open(io.BytesIO(content)) as container:
            if not container.streams.audio:
                return None
            for frame in container.decode(audio=0):
                samples += frame.samples
                rate = frame.sample_rate
        return samples / rate
    except av.FFmpegError:
        return None


def _words(text: str, start_ms: int, end_ms: int, speaker: str | None) -> list[dict[str, Any]]:
    tokens = text.split()
    step = (end_ms - start_ms) / len(tokens)
    return [
        {
            "text": token,
            "start": round(start_ms + i * step),
            "end": round(start_ms + (i + 0.8) * step),
            "confidence": 0.9 + 0.01 * (i % 10),
            "speaker": speaker,
            "channel": None,
        }
        for i, token in enumerate(tokens)
    ]


def heard(seconds: float, request: dict[str, Any]) -> dict[str, Any]:
    """What AssemblyAI answers for `seconds` of audio: SCRIPT's utterances in equal slices."""
    diarized = bool(request.get("speaker_labels"))
    names = _identified_names(request)
    words, utterances = [], []
    slice_ms = seconds * 1000 / len(SCRIPT)
    for i, (speaker, text) in enumerate(SCRIPT):
        label = names.get(speaker, speaker) if diarized else None
        said = _words(text, round(i * slice_ms), round((i + 1) * slice_ms), label)
        words += said
        start, end = said[0]["start"], said[-1]["end"]
        utterances.append({"speaker": label, "start": start, "end": end, "text": text,
                           "confidence": 0.95, "words": said, "channel": None})  # fmt: skip
    if request.get("language_detection"):
        language = "en"
    else:
        language = request.get("language_code") or "en_us"
    return {
        "text": " ".join(text for _, text in SCRIPT),
        "words": words,
        "utterances": utterances if diarized else None,
        "language_code": language,
        "confidence": 0.95,
        "audio_duration": round(seconds),
        "speech_model_used": request["speech_models"][0],
    }


def _identified_names(request: dict[str, Any]) -> dict[str, str]:
    """Speaker identification by name: the known names, given to the letters in order."""
    task = (request.get("speech_understanding") or {}).get("request") or {}
    identification = task.get("speaker_identification") or {}
    if identification.get("speaker_type") != "name":
        return {}
    letters = sorted({speaker for speaker, _ in SCRIPT})
    return dict(zip(letters, identification.get("known_values") or [], strict=False))


def refusal(request: dict[str, Any]) -> str | None:
    """Why AssemblyAI would answer 400 to this transcript request, or None."""
    unknown = sorted(set(request) - TRANSCRIPT_PARAMS)
    if unknown:
        return f"Invalid request: unknown field(s) {', '.join(unknown)}"
    if not isinstance(request.get("audio_url"), str):
        return "audio_url must be a string"
    models = request.get("speech_models")
    if not models or not isinstance(models, list):
        return "speech_models is required and must be a non-empty list"
    if any(model not in SPEECH_MODELS for model in models):
        return f"speech_models contains an unknown model: {models}"
    if "language_code" in request and request.get("language_detection"):
        return "language_code and language_detection cannot be used together"
    code = request.get("language_code")
    if code is not None and code not in LANGUAGE_CODES:
        return f"language_code must be one of the supported languages, got {code!r}"
    if "prompt" in request and "keyterms_prompt" in request:
        return "prompt and keyterms_prompt cannot be used in the same request"
    terms = request.get("keyterms_prompt")
    if terms is not None:
        if not isinstance(terms, list) or len(terms) > MAX_KEYTERMS:
            return f"keyterms_prompt must be a list of at most {MAX_KEYTERMS} phrases"
        if any(len(str(term).split()) > MAX_KEYTERM_WORDS for term in terms):
            return f"Each keyterms_prompt phrase must have at most {MAX_KEYTERM_WORDS} words"
    for flag in ("punctuate", "format_text", "speaker_labels", "language_detection"):
        if flag in request and not isinstance(request[flag], bool):
            return f"{flag} must be a Boolean"
    if request.get("speech_understanding") and not request.get("speaker_labels"):
        return "Speaker Identification requires speaker_labels to be enabled"
    return None


@dataclass
class Job:
    """One transcript as the fake keeps it."""

    id: str
    key: str
    scenario: str
    request: dict[str, Any]
    audio: bytes | None
    polls: int = 0
    deleted: bool = False
    status: str = "queued"
    result: dict[str, Any] = field(default_factory=dict)


class FakeAssemblyAI:
    def __init__(self, keys: tuple[str, ...] = (API_KEY,), polls_before_done: int = 2) -> None:
        self.keys = set(keys)
        self.polls_before_done = polls_before_done
        self.uploads: dict[str, bytes] = {}  # kept until their transcript is deleted
        self.upload_urls: list[str] = []  # every upload_url answered, oldest first
        self.jobs: dict[str, Job] = {}
        self.counts: dict[str, int] = {}
        self.server = LoopbackServer(self.handle)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> "FakeAssemblyAI":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def url(self, scenario: str) -> str:
        return f"{self.server.url}/{scenario}"

    def reset(self) -> None:
        self.server.requests.clear()
        self.uploads.clear()
        self.upload_urls.clear()
        self.jobs.clear()
        self.counts.clear()

    def seen(self, scenario: str, method: str | None = None) -> list[Request]:
        """The requests made to `scenario` (of `method`), oldest first."""
        return [
            r
            for r in self.server.requests
            if r.path.split("/")[1] == scenario and (method is None or r.method == method)
        ]

    def deleted(self) -> list[str]:
        return [job.id for job in self.jobs.values() if job.deleted]

    # --- HTTP ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        _, scenario, *rest = request.path.split("/")
        path = "/" + "/".join(rest)
        count = self.counts[scenario] = self.counts.get(scenario, 0) + 1
        key = request.headers.get("authorization", "")
        if key not in self.keys:
            return _error(401, UNAUTHORIZED)
        if scenario == "limited-once" and count == 1:
            return _error(429, "Too Many Requests", {"retry-after": "1"})
        if scenario == "fail" or (scenario == "fail-once" and count == 1):
            return _error(500, "Internal Server Error")
        if path == "/v2/upload" and request.method == "POST":
            return self._upload(request)
        if path == "/v2/transcript" and request.method == "POST":
            return self._submit(request, scenario, key)
        if path.startswith("/v2/transcript/"):
            job = self.jobs.get(path.removeprefix("/v2/transcript/"))
            if job is None or job.key != key:  # another project's transcript is not found
                return _error(404, NOT_FOUND)
            if request.method == "GET":
                return json_response(200, self._poll(job))
            if request.method == "DELETE":
                return json_response(200, self._delete(job))
        return _error(404, "Not found")

    def _upload(self, request: Request) -> Response:
        if request.headers.get("content-type") != "application/octet-stream":
            return _error(400, "Upload body must be sent as application/octet-stream")
        if not request.body:
            return _error(400, "Upload body is empty")
        upload_url = f"https://cdn.assemblyai.com/upload/{uuid.uuid4()}"
        self.uploads[upload_url] = request.body
        self.upload_urls.append(upload_url)
        return json_response(200, {"upload_url": upload_url})

    def _submit(self, request: Request, scenario: str, key: str) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON body")
        problem = refusal(body)
        if problem:
            return _error(400, problem)
        job = Job(str(uuid.uuid4()), key, scenario, body, self.uploads.get(body["audio_url"]))
        self.jobs[job.id] = job
        return json_response(200, self._resource(job))

    def _poll(self, job: Job) -> dict[str, Any]:
        if job.status in ("queued", "processing") and not job.deleted:
            job.polls += 1
            if job.scenario == "stuck" or job.polls <= self.polls_before_done:
                job.status = "queued" if job.polls < self.polls_before_done else "processing"
            else:
                self._finish(job)
        return self._resource(job)

    def _finish(self, job: Job) -> None:
        if job.audio is None:
            job.status, job.result = "error", {"error": _download_error(job)}
            return
        seconds = audio_seconds(job.audio)
        if seconds is None:
            job.status = "error"
            job.result = {"error": "File does not appear to contain audio. File type is "
                          "application/octet-stream (data)."}  # fmt: skip
        elif seconds < MIN_AUDIO_SECONDS:
            job.status, job.result = "error", {"error": "Audio duration is too short."}
        elif job.scenario == "job-error":
            job.status, job.result = "error", {"error": SERVER_ERROR}
        else:
            job.status, job.result = "completed", heard(seconds, job.request)
            if job.scenario == "no-duration":  # the schema allows `audio_duration: null`
                job.result["audio_duration"] = None

    def _delete(self, job: Job) -> dict[str, Any]:
        # AssemblyAI blanks a deleted transcript (and drops its upload) but keeps the record.
        job.deleted = True
        self.uploads.pop(job.request["audio_url"], None)
        job.result = {**job.result, "text": "Deleted by user.", "words": None, "utterances": None}
        job.request = {**job.request, "audio_url": "http://deleted_by_user"}
        return self._resource(job)

    def _resource(self, job: Job) -> dict[str, Any]:
        """The Transcript object: the request's settings echoed, the result once there is one."""
        resource = {
            "id": job.id,
            "status": job.status,
            "speech_model": None,
            "language_model": "assemblyai_default",
            "acoustic_model": "assemblyai_default",
            "text": None,
            "words": None,
            "utterances": None,
            "audio_duration": None,
            "language_confidence_threshold": None,
            "language_confidence": None,
            "webhook_auth": False,
            "auto_highlights": False,
            "redact_pii": False,
            "summarization": False,
            **job.request,
            **job.result,
        }
        if job.status == "completed" and "language_code" in job.result:
            resource["language_confidence"] = 0.99
        return resource


def _download_error(job: Job) -> str:
    url = job.request["audio_url"]
    return (
        f"Download error, unable to download {url}. Please make sure the file exists and is "
        "accessible from the internet."
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


def start_fake(polls_before_done: int = 0) -> tuple[str, Callable[[], None]]:
    """A running fake and how to stop it: (base_url of its `ok` scenario, stop). It accepts
    the key API_KEY; by default a transcript is completed at its first poll (the bench
    measures the adapter, not the fake's queue)."""
    fake = FakeAssemblyAI(polls_before_done=polls_before_done).start()
    return fake.url("ok"), fake.stop
