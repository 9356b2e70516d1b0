"""A fake Deepgram on loopback: `/v1/listen` (pre-recorded) and `/v1/speak` (Aura REST).

Written from Deepgram's public API reference:
  https://developers.deepgram.com/reference/speech-to-text-api/listen
  https://developers.deepgram.com/reference/text-to-speech-api/speak
  https://developers.deepgram.com/docs/tts-media-output-settings  (format combinations)
  https://developers.deepgram.com/docs/utterances, /docs/diarization, /docs/keyterm
  https://developers.deepgram.com/reference/errors  (error bodies)
  Deepgram's OpenAPI document (as vendored by github.com/tryAGI/Deepgram, openapi.yaml)
Aura-2 voices answer with x-dg-request-id / x-dg-model-name / x-dg-characters headers,
Aura-1 voices with dg-request-id / dg-model-name / dg-char-count (as observed on the
service and reported in Deepgram's community forum).

A real HTTP/1.1 server (tests/vendor_fakes/loopback.py: uvicorn in a thread): it checks
the `Token` key, the paths, the query parameters against Deepgram's rules (model,
language, key terms only for Nova-3, Aura's encoding/container/sample-rate combinations)
and the bodies; it answers Deepgram's JSON (a scripted conversation laid over the audio's
real duration, measured by decoding it) and streams real encoded audio in chunks. Deepgram's error
bodies come in both of its shapes: `{"err_code", "err_msg", "request_id"}` and
`{"category", "message", "details", "request_id"}`. Where the reference shows no body for
an error, the wording here is the fake's own.

The first path element picks a behaviour (`http://127.0.0.1:PORT/<scenario>/v1/...`):
  ok            as Deepgram answers
  limited-once  429 on the first request, then as ok;  limited: 429 always
  fail-once     500 on the first request, then as ok;  fail: 500 always
  reset         speech: the first chunk, then the connection is dropped
  gated         speech: the first chunk, then nothing until `gate` is set
Every request is recorded in `requests` (query as lists, headers, body).
"""

import asyncio
import datetime
import hashlib
import io
import re
import struct
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import av
import numpy as np

from tests.vendor_fakes.loopback import LoopbackServer, Request, Response, json_response

# (speaker, what they say): laid over the audio, one utterance each, in equal slices.
SCRIPT: tuple[tuple[int, str], ...] = (
    (0, "Hello, thanks for calling Acme support."),
    (1, "Hi! I have a question about my order."),
    (0, "Of course, go ahead."),
)
STT_MODELS = {
    "nova-3",
    "nova-3-general",
    "nova-3-medical",
    "nova-2",
    "nova-2-general",
    "nova",
    "enhanced",
    "base",
    "whisper-large",
}
LANGUAGES = {"en", "en-US", "en-GB", "es", "de", "fr", "it", "pt", "nl", "ja", "multi"}
AURA_MODEL = re.compile(r"^aura-(2-)?[a-z]+-[a-z]{2}$")
AURA_MAX_CHARACTERS = 2000
SPEED_RANGE = (0.7, 1.5)
CHUNK_BYTES = 4096
SECONDS_PER_CHARACTER = 0.01  # the length of the fake's speech
API_KEY = "dg-fake-key-5678"  # the key the fake accepts (as `Authorization: Token ...`)


@dataclass(frozen=True)
class SpeakFormat:
    """One row of Aura's format combinations table."""

    containers: tuple[str, ...]  # allowed `container` values; () = the parameter is refused
    sample_rates: tuple[int, ...]  # allowed `sample_rate` values; first = the default
    rate_settable: bool
    content_type: str


SPEAK_FORMATS = {
    "linear16": SpeakFormat(("wav", "none"), (24000, 8000, 16000, 32000, 48000), True, "audio/wav"),
    "mp3": SpeakFormat((), (22050,), False, "audio/mpeg"),
    "opus": SpeakFormat(("ogg",), (48000,), False, "audio/ogg"),
    "aac": SpeakFormat((), (22050,), False, "audio/aac"),
    "flac": SpeakFormat((), (48000, 8000, 16000, 22050, 32000), True, "audio/flac"),
}
# encoding -> (PyAV container, codec) for the encoded ones
_CODECS = {
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
    "flac": ("flac", "flac"),
}


class Refusal(Exception):
    """An error answer: status and Deepgram's body."""

    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def legacy_error(status: int, code: str, message: str) -> Refusal:
    return Refusal(status, {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())})


def modern_error(status: int, category: str, message: str, details: str = "") -> Refusal:
    body = {"category": category, "message": message, "request_id": str(uuid.uuid4())}
    if details:
        body["details"] = details
    return Refusal(status, body)


def scenario_of(request: Request) -> str:
    return request.path.split("/", 2)[1]


def api_path(request: Request) -> str:
    """The path after the scenario: /v1/listen, /v1/speak."""
    parts = request.path.split("/", 2)
    return "/" + (parts[2] if len(parts) > 2 else "")


def last(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values else None


class FakeDeepgram:
    def __init__(self, api_key: str = API_KEY, script: tuple[tuple[int, str], ...] = SCRIPT):
        self.api_key = api_key
        self.script = script
        self.counts: dict[str, int] = {}
        self.gate = threading.Event()  # the `gated` scenario's speech waits for it
        self.server = LoopbackServer(self.handle)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> "FakeDeepgram":
        self.server.start()
        return self

    def stop(self) -> None:
        self.gate.set()
        self.server.stop()

    def url(self, scenario: str = "ok") -> str:
        """A base_url as Deepgram's (`https://api.deepgram.com`): paths start with /v1."""
        return f"{self.server.url}/{scenario}"

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def reset(self) -> None:
        self.server.requests.clear()
        self.counts.clear()
        self.gate.clear()

    def seen(self, scenario: str = "ok") -> list[Request]:
        return [r for r in self.requests if scenario_of(r) == scenario]

    # --- dispatch -----------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        scenario, path = scenario_of(request), api_path(request)
        count = self.counts[scenario] = self.counts.get(scenario, 0) + 1
        try:
            self._check_scenario(scenario, count)
            self._check_auth(request.headers)
            if request.method == "POST" and path == "/v1/listen":
                return json_response(200, self.listen(request))
            if request.method == "POST" and path == "/v1/speak":
                return self.speak(request, scenario)
            raise legacy_error(404, "NOT_FOUND", f"No route for {request.method} {path}.")
        except Refusal as refusal:
            return json_response(refusal.status, refusal.body, refusal.headers)

    def _check_scenario(self, scenario: str, count: int) -> None:
        if scenario == "limited" or (scenario == "limited-once" and count == 1):
            raise legacy_error(429, "TOO_MANY_REQUESTS", "Too many requests. Try again later.")
        if scenario == "fail" or (scenario == "fail-once" and count == 1):
            raise legacy_error(500, "INTERNAL_SERVER_ERROR", "Something went wrong.")
        if scenario == "unpaid":
            raise legacy_error(
                402,
                "ASR_PAYMENT_REQUIRED",
                "Project does not have enough credits for an ASR request and does not have "
                "an overage agreement.",
            )

    def _check_auth(self, headers: dict[str, str]) -> None:
        if headers.get("authorization") != f"Token {self.api_key}":
            raise legacy_error(401, "INVALID_AUTH", "Invalid credentials.")

    # --- /v1/listen ---------------------------------------------------------------------

    def listen(self, seen: Request) -> dict:
        if seen.headers.get("content-type", "").startswith("application/json"):
            raise legacy_error(
                400,
                "Bad Request",
                "Content-type was application/json, but we could not process the JSON payload.",
            )
        flags = _listen_flags(seen)
        model = last(seen, "model") or "base"
        language = last(seen, "language")
        if model not in STT_MODELS or (language and language not in LANGUAGES):
            raise legacy_error(400, "Bad Request", "No such model/language/tier combination found.")
        if seen.query.get("keyterm") and not model.startswith("nova-3"):
            raise legacy_error(
                400, "Bad Request", "Keyterm Prompting is only available for Nova-3 models."
            )
        _check_seconds(last(seen, "utt_split"), "utt_split")
        duration = _decoded_seconds(seen.body)
        utterances = self._utterances(duration, flags)
        words = [word for utterance in utterances for word in utterance["words"]]
        alternative = {
            "transcript": " ".join(u["transcript"] for u in utterances),
            "confidence": 0.97 if words else 0.0,
            "words": words,
        }
        channel: dict = {"alternatives": [alternative]}
        if flags["detect_language"]:
            channel["detected_language"] = "en"
            channel["language_confidence"] = 0.99
        results: dict = {"channels": [channel]}
        if flags["utterances"]:
            results["utterances"] = utterances
        return {"metadata": _metadata(seen.body, duration, model), "results": results}

    def _utterances(self, duration: float, flags: dict[str, bool]) -> list[dict]:
        if duration <= 0:
            return []
        formatted = flags["punctuate"] or flags["smart_format"]
        slice_seconds = duration / len(self.script)
        utterances = []
        for index, (speaker, line) in enumerate(self.script):
            start = index * slice_seconds
            tokens = line.split()
            step = slice_seconds / len(tokens)
            words = []
            for i, token in enumerate(tokens):
                word = {
                    "word": re.sub(r"[^\w']", "", token).lower(),
                    "start": round(start + i * step, 3),
                    "end": round(start + (i + 0.8) * step, 3),
                    "confidence": 0.95,
                }
                if formatted:
                    word["punctuated_word"] = token
                if flags["diarize"]:
                    word["speaker"] = speaker
                    word["speaker_confidence"] = 0.9
                words.append(word)
            text = line if formatted else " ".join(w["word"] for w in words)
            utterance = {
                "start": words[0]["start"],
                "end": words[-1]["end"],
                "confidence": 0.96,
                "channel": 0,
                "transcript": text,
                "words": words,
                "id": str(uuid.uuid4()),
            }
            if flags["diarize"]:
                utterance["speaker"] = speaker
            utterances.append(utterance)
        return utterances

    # --- /v1/speak ----------------------------------------------------------------------

    def speak(self, request: Request, scenario: str) -> Response:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise modern_error(
                415, "UNSUPPORTED_CONTENT_TYPE", "Content-Type must be application/json."
            )
        try:
            text = request.json()["text"]
        except (ValueError, KeyError, TypeError):
            details = "Json deserialize error: missing field `text`"
            raise modern_error(400, "INVALID_JSON", "Invalid JSON submitted.", details) from None
        if not isinstance(text, str) or not text.strip():
            raise modern_error(400, "INVALID_INPUT", "Input text contained no characters.")
        if len(text) > AURA_MAX_CHARACTERS:
            raise modern_error(
                413,
                "INPUT_TOO_LONG",
                f"Input text exceeded the character limit of {AURA_MAX_CHARACTERS}.",
            )
        model = last(request, "model") or "aura-asteria-en"
        if not AURA_MODEL.match(model):
            raise modern_error(
                400,
                "INVALID_QUERY_PARAMETER",
                "Failed to resolve a model from the query parameters.",
                f"No such model: {model}",
            )
        encoding, container, rate = _speak_format(request)
        _check_speed(last(request, "speed"))
        audio = _speech_audio(len(text) * SECONDS_PER_CHARACTER, encoding, container, rate)
        content_type = SPEAK_FORMATS[encoding].content_type
        if container == "none":
            content_type = "application/octet-stream"
        return Response(
            200, self._chunks(audio, scenario), content_type, _speak_headers(model, len(text))
        )

    async def _chunks(self, audio: bytes, scenario: str) -> AsyncIterator[bytes]:
        """The audio in pieces, as Aura streams it (chunked, no length)."""
        for offset in range(0, len(audio), CHUNK_BYTES):
            yield audio[offset : offset + CHUNK_BYTES]
            if offset == 0 and scenario == "reset":
                raise ConnectionAbortedError("the fake drops the connection mid-stream")
            if offset == 0 and scenario == "gated":
                await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)


# --- helpers ------------------------------------------------------------------------------


def _flag(seen: Request, name: str) -> bool:
    value = last(seen, name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise legacy_error(400, "Bad Request", f"Invalid query string: `{name}` must be a boolean.")
    return value == "true"


def _listen_flags(seen: Request) -> dict[str, bool]:
    names = ("punctuate", "smart_format", "utterances", "diarize", "detect_language")
    return {name: _flag(seen, name) for name in names}


def _check_seconds(value: str | None, name: str) -> None:
    try:
        if value is not None and float(value) < 0:
            raise ValueError
    except ValueError:
        raise legacy_error(
            400, "Bad Request", f"Invalid query string: `{name}` must be a number of seconds."
        ) from None


def _decoded_seconds(content: bytes) -> float:
    if not content:
        raise legacy_error(
            400, "Bad Request", "Bad Request: failed to process audio: corrupt or unsupported data"
        )
    samples, rate = 0, 16000
    try:
        with av.open(io.BytesIO(content)) as container:
            for frame in container.decode(audio=0):
                samples += frame.samples
                rate = frame.sample_rate
    except (av.FFmpegError, IndexError):
        raise legacy_error(
            400, "Bad Request", "Bad Request: failed to process audio: corrupt or unsupported data"
        ) from None
    return round(samples / rate, 3)


def _metadata(content: bytes, duration: float, model: str) -> dict:
    model_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, model))
    return {
        "transaction_key": "deprecated",
        "request_id": str(uuid.uuid4()),
        "sha256": hashlib.sha256(content).hexdigest(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
        "duration": duration,
        "channels": 1,
        "models": [model_uuid],
        "model_info": {
            model_uuid: {"name": f"general-{model}", "version": "2025-01-01", "arch": model}
        },
    }


def _speak_format(seen: Request) -> tuple[str, str | None, int]:
    """(encoding, container, sample_rate) after Aura's combination rules."""
    encoding = last(seen, "encoding") or "mp3"
    fmt = SPEAK_FORMATS.get(encoding)
    if fmt is None:
        raise modern_error(400, "UNSUPPORTED_AUDIO_FORMAT", f"Unsupported encoding: {encoding}.")
    container = last(seen, "container")
    if container is not None and container not in fmt.containers:
        problem = f"container={container} is not valid for encoding={encoding}."
        raise modern_error(400, "UNSUPPORTED_AUDIO_FORMAT", problem)
    container = container or (fmt.containers[0] if fmt.containers else None)
    rate_text = last(seen, "sample_rate")
    if rate_text is None:
        return encoding, container, fmt.sample_rates[0]
    if not fmt.rate_settable or not rate_text.isdigit() or int(rate_text) not in fmt.sample_rates:
        problem = f"sample_rate={rate_text} is not valid for encoding={encoding}."
        raise modern_error(400, "UNSUPPORTED_AUDIO_FORMAT", problem)
    return encoding, container, int(rate_text)


def _check_speed(value: str | None) -> None:
    if value is None:
        return
    try:
        speed = float(value)
    except ValueError:
        speed = float("nan")
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise modern_error(
            400,
            "INVALID_QUERY_PARAMETER",
            f"speed must be between {SPEED_RANGE[0]} and {SPEED_RANGE[1]}.",
        )


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(max(int(seconds * rate), rate // 10)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


def _speech_audio(seconds: float, encoding: str, container: str | None, rate: int) -> bytes:
    pcm = _tone(seconds, rate)
    if encoding == "linear16":
        data = pcm.astype("<i2").tobytes()
        if container == "none":
            return data
        fmt_chunk = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt_chunk
        header += b"data" + struct.pack("<I", len(data))
        return header + data
    container_format, codec = _CODECS[encoding]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def _speak_headers(model: str, characters: int) -> dict[str, str]:
    """Aura-2 names its headers x-dg-*, with x-dg-characters; Aura-1 dg-*, dg-char-count."""
    if model.startswith("aura-2-"):
        prefix, count = "x-dg-", "x-dg-characters"
    else:
        prefix, count = "dg-", "dg-char-count"
    return {
        f"{prefix}request-id": str(uuid.uuid4()),
        f"{prefix}model-name": model,
        count: str(characters),
    }


def start_fake() -> tuple[str, Callable[[], None]]:
    """A running fake and how to stop it: (base_url of its `ok` scenario, stop).
    It accepts the key API_KEY."""
    fake = FakeDeepgram().start()
    return fake.url("ok"), fake.stop
