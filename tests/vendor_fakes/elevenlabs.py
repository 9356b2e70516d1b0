"""A loopback ElevenLabs, written from its public API reference, for the provider's tests.

A real HTTP server (an ASGI app under uvicorn, in a background thread) speaking the two
endpoints ARouter uses, as the reference describes them:

- `POST /v1/text-to-speech/{voice_id}/stream?output_format=...` with a JSON body `text`,
  `model_id`, `voice_settings`: the audio streamed in chunks (chunked transfer encoding),
  really encoded in the asked format (MP3, Ogg Opus, raw 16-bit PCM at the asked rate,
  mu-law, A-law), with the `request-id`, `x-character-count` and `character-cost` headers;
- `POST /v1/speech-to-text` (multipart: `file`, `model_id`, `language_code`, `diarize`,
  `timestamps_granularity`, `tag_audio_events`, `temperature`, `keyterms` as a JSON
  array, Scribe v2 only, each under 50 characters and five words): Scribe's JSON (`text`,
  `language_code`, `language_probability`, `words` of type word / spacing / audio_event
  with `start`, `end`, `speaker_id`, `logprob`, `audio_duration_secs`), its words spread
  over the upload's real decoded length.

The key must come in `xi-api-key`. Failures answer with ElevenLabs' error bodies: a
`{"detail": {"status", "message"}}` object (401 invalid_api_key, 404 voice_not_found, 429,
500) or FastAPI's 422 list of validation errors (`loc`, `msg`, `type`).

The first path element picks a behaviour, so one server stands in for many upstreams
(`url(scenario)` is the base URL a catalog's upstream table names):
  ok             as described above
  limited-once   429 (too_many_concurrent_requests) on the first request, then as `ok`
  limited        429 always
  fail-once      500 on the first request, then as `ok`
  fail           500 always
  no-duration    transcripts without `audio_duration_secs` (older API versions)
  no-count       speech without the `x-character-count` header
  reset          speech: two chunks, then the connection is dropped
  hold           speech: one chunk, then waits for `release` before the rest

References (read for this file):
- https://elevenlabs.io/docs/api-reference/authentication (the `xi-api-key` header)
- https://elevenlabs.io/docs/api-reference/text-to-speech/stream
- https://elevenlabs.io/docs/api-reference/speech-to-text/convert
- https://elevenlabs.io/docs/eleven-api/guides/how-to/speech-to-text/batch/keyterm-prompting
- https://github.com/elevenlabs/elevenlabs-python, generated from ElevenLabs' API
  definition: text_to_speech/types/text_to_speech_stream_request_output_format.py (the
  output formats), types/speech_to_text_chunk_response_model.py and
  speech_to_text_word_response_model.py (Scribe's answer), types/http_validation_error.py
  (the 422 body), speech_to_text/raw_client.py (the multipart fields).
- The default premade voices' ids, as ElevenLabs lists them in its voice library.
"""

import asyncio
import io
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

import av
import numpy as np
import uvicorn

API_KEY = "xi-fake-elevenlabs-key-5678"
OUTPUT_FORMATS = (
    "mp3_22050_32", "mp3_24000_48", "mp3_44100_32", "mp3_44100_64", "mp3_44100_96",
    "mp3_44100_128", "mp3_44100_192", "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000",
    "pcm_32000", "pcm_44100", "pcm_48000", "ulaw_8000", "alaw_8000", "opus_48000_32",
    "opus_48000_64", "opus_48000_96", "opus_48000_128", "opus_48000_192",
)  # fmt: skip
PREMADE_VOICES = {
    "9BWtsMINqrJLrRacOk9x": "Aria", "CwhRBWXzGAHq8TQ4Fs17": "Roger",
    "EXAVITQu4vr4xnSDxMaL": "Sarah", "FGY2WhTYpPnrIDTdsKH5": "Laura",
    "IKne3meq5aSn9XLyUdCD": "Charlie", "JBFqnCBsd6RMkjVDRZzb": "George",
    "N2lVS1w4EtoT3dr4eOWO": "Callum", "SAz9YHcvj6GT2YYXdXww": "River",
    "TX3LPaxmHKxFdv7VOQHJ": "Liam", "XB0fDUnXU5powFXDhCwa": "Charlotte",
    "Xb7hH8MSUJpSbSDYk0k2": "Alice", "XrExE9yKIg1WjnnlVkGX": "Matilda",
    "bIHbv24MWmeRgasZH58o": "Will", "cgSgspJ2msm6clMCkdW9": "Jessica",
    "cjVigY5qzO86Huf0OWal": "Eric", "iP95p4xoKVk53GoZ742B": "Chris",
    "nPczCjzI2devNBz1zQrb": "Brian", "onwK4e9ZLuTAKqWW03F9": "Daniel",
    "pFZP5JQG7iQjIQuC4Bku": "Lily", "pqHfZKP75CvOlQylNhV4": "Bill",
    "21m00Tcm4TlvDq8ikWAM": "Rachel",
}  # fmt: skip
TTS_MODELS = {
    "eleven_flash_v2_5": 0.5, "eleven_turbo_v2_5": 0.5, "eleven_flash_v2": 0.5,
    "eleven_turbo_v2": 0.5, "eleven_multilingual_v2": 1.0, "eleven_v3": 1.0,
}  # model -> credits per character (the `character-cost` header)  # fmt: skip
STT_MODELS = ("scribe_v1", "scribe_v1_experimental", "scribe_v2")
SECONDS_PER_CHARACTER = 0.05  # how long the fake's speech lasts
CHUNK_SECONDS = 0.1  # audio per streamed chunk
# The fake's speakers say these sentences in turn, three words at a time.
SCRIPT = ("Hello there friend.", "How are you?", "Fine thank you.", "See you soon.")
WORD_SECONDS, SPACE_SECONDS, SENTENCE_GAP = 0.3, 0.1, 0.5


@dataclass
class Seen:
    """One request as the fake received it."""

    scenario: str
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    json: dict | None = None
    form: dict[str, list[str]] = field(default_factory=dict)
    file_name: str = ""
    file_bytes: bytes = b""


def multipart_fields(content_type: str, body: bytes) -> tuple[dict[str, list[str]], str, bytes]:
    """(text fields, the file's name, the file's bytes) of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"content-type: {content_type}\r\n\r\n".encode() + body
    )
    form: dict[str, list[str]] = {}
    file_name, file_bytes = "", b""
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            file_name, file_bytes = part.get_filename(), payload
        else:
            form.setdefault(name, []).append(payload.decode())
    return form, file_name, file_bytes


def detail(status: str, message: str) -> dict:
    return {"detail": {"status": status, "message": message}}


def validation_error(loc: list[str], msg: str, kind: str, given=None) -> dict:
    return {"detail": [{"type": kind, "loc": loc, "msg": msg, "input": given}]}


# --- audio -----------------------------------------------------------------------------------


def tone(seconds: float, rate: int) -> np.ndarray:
    """A 220 Hz tone, int16 mono: stands in for speech."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


def _encoded(samples: np.ndarray, rate: int, container: str, codec: str, bit_rate: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def speech_audio(text: str, output_format: str) -> tuple[bytes, str, int]:
    """(audio bytes, content type, bytes per streamed chunk) for `text` in `output_format`."""
    codec, rate_text, *rest = output_format.split("_")
    rate = int(rate_text)
    samples = tone(max(0.5, len(text) * SECONDS_PER_CHARACTER), rate)
    chunk = int(rate * CHUNK_SECONDS)
    if codec == "pcm":
        return samples.astype("<i2").tobytes(), "audio/pcm", chunk * 2
    bit_rate = int(rest[0]) * 1000 if rest else 0
    if codec == "mp3":
        return _encoded(samples, rate, "mp3", "libmp3lame", bit_rate), "audio/mpeg", 2048
    if codec == "opus":
        return _encoded(samples, rate, "ogg", "libopus", bit_rate), "audio/opus", 2048
    law = {"ulaw": ("mulaw", "pcm_mulaw"), "alaw": ("alaw", "pcm_alaw")}[codec]
    return _encoded(samples, rate, *law, 0), "audio/basic", chunk


def decoded_seconds(content: bytes) -> float | None:
    try:
        with av.open(io.BytesIO(content)) as container:
            samples, rate = 0, 0
            for frame in container.decode(audio=0):
                samples += frame.samples
                rate = frame.sample_rate
    except (av.FFmpegError, ValueError):
        return None
    return samples / rate if rate else None


def scribe_words(seconds: float, diarize: bool, events: bool) -> list[dict]:
    """Scribe's `words` for `seconds` of audio: the script's sentences in turn, each
    speaker saying one, spacing between words, an event after the first sentence."""
    words: list[dict] = []
    t, sentence = 0.2, 0
    while t + WORD_SECONDS <= seconds:
        speaker = {"speaker_id": f"speaker_{sentence % 2}"} if diarize else {}
        if words:
            words.append({"text": " ", "type": "spacing", "start": t - SENTENCE_GAP,
                          "end": t, "logprob": 0.0, **speaker})  # fmt: skip
        for n, text in enumerate(SCRIPT[sentence % len(SCRIPT)].split()):
            if t + WORD_SECONDS > seconds:
                break
            if n:
                words.append({"text": " ", "type": "spacing", "start": t - SPACE_SECONDS,
                              "end": t, "logprob": 0.0, **speaker})  # fmt: skip
            words.append({"text": text, "type": "word", "start": round(t, 3),
                          "end": round(t + WORD_SECONDS, 3), "logprob": -0.05 * (n + 1),
                          **speaker})  # fmt: skip
            t += WORD_SECONDS + SPACE_SECONDS
        if events and sentence == 0:
            words.append({"text": " ", "type": "spacing", "start": t, "end": t, "logprob": 0.0})
            words.append({"text": "(laughter)", "type": "audio_event", "start": round(t, 3),
                          "end": round(t + 0.2, 3), "logprob": 0.0})  # fmt: skip
        t += SENTENCE_GAP
        sentence += 1
    return words


# --- the server --------------------------------------------------------------------------------


class ElevenLabsFake:
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.keys = {api_key}  # every key the fake's account accepts (a team's own too)
        self.requests: list[Seen] = []
        self.counts: dict[str, int] = {}
        self.release = threading.Event()  # lets a `hold` stream go on
        self.character_count: int | None = None  # when set, reported instead of len(text)
        self.streams_finished = 0  # speech bodies sent to their end
        self.port = _free_port()
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
            http="h11", interface="asgi3",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> "ElevenLabsFake":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the ElevenLabs fake did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def url(self, scenario: str = "ok") -> str:
        return f"http://127.0.0.1:{self.port}/{scenario}"

    def reset(self) -> None:
        self.requests.clear()
        self.counts.clear()
        self.release.clear()
        self.character_count = None
        self.streams_finished = 0
        self.keys = {self.api_key}

    def seen(self, scenario: str) -> list[Seen]:
        return [r for r in self.requests if r.scenario == scenario]

    # --- ASGI ---------------------------------------------------------------------------

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        parts = scope["path"].split("/", 2)
        scenario, path = parts[1], "/" + (parts[2] if len(parts) > 2 else "")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = Seen(scenario, scope["method"], path, headers,
                    parse_qs(scope["query_string"].decode()))  # fmt: skip
        content_type = headers.get("content-type", "")
        if content_type.startswith("application/json") and body:
            seen.json = json.loads(body)
        elif content_type.startswith("multipart/form-data"):
            seen.form, seen.file_name, seen.file_bytes = multipart_fields(content_type, body)
        self.requests.append(seen)
        count = self.counts[scenario] = self.counts.get(scenario, 0) + 1
        await self._answer(seen, count, send)

    async def _answer(self, seen: Seen, count: int, send) -> None:
        if seen.headers.get("xi-api-key") not in self.keys:
            await _json(send, 401, detail("invalid_api_key", "Invalid API key"))
            return
        scenario = seen.scenario
        if scenario == "limited" or (scenario == "limited-once" and count == 1):
            message = "Too many concurrent requests for your subscription. Please try again."
            await _json(send, 429, detail("too_many_concurrent_requests", message))
            return
        if scenario == "fail" or (scenario == "fail-once" and count == 1):
            await _json(send, 500, detail("internal_server_error", "An internal error occurred."))
            return
        if seen.method == "POST" and seen.path == "/v1/speech-to-text":
            await self._speech_to_text(seen, send)
        elif seen.method == "POST" and seen.path.startswith("/v1/text-to-speech/"):
            await self._text_to_speech(seen, send)
        else:
            await _json(send, 404, {"detail": "Not Found"})

    # --- text to speech -----------------------------------------------------------------

    def _speech_refusal(self, seen: Seen) -> tuple[int, dict] | None:
        voice_id, _, tail = seen.path.removeprefix("/v1/text-to-speech/").partition("/")
        if tail != "stream":
            return 404, {"detail": "Not Found"}
        fmt = (seen.query.get("output_format") or ["mp3_44100_128"])[0]
        if fmt not in OUTPUT_FORMATS:
            message = "Input should be a valid output format"
            return 422, validation_error(["query", "output_format"], message, "enum", fmt)
        body = seen.json
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return 422, validation_error(["body", "text"], "Field required", "missing")
        if not body["text"].strip():
            return 400, detail("invalid_text", "Text must not be empty.")
        model = body.get("model_id", "eleven_multilingual_v2")
        if model not in TTS_MODELS:
            return 400, detail("model_not_found", f"A model with model ID {model} does not exist.")
        if voice_id not in PREMADE_VOICES:
            return 404, detail("voice_not_found",
                               f"A voice with voice_id {voice_id} was not found.")  # fmt: skip
        speed = (body.get("voice_settings") or {}).get("speed", 1.0)
        if not 0.7 <= speed <= 1.2:
            return 422, validation_error(["body", "voice_settings", "speed"],
                                         "Input should be between 0.7 and 1.2",
                                         "less_than_equal", speed)  # fmt: skip
        return None

    async def _text_to_speech(self, seen: Seen, send) -> None:
        refusal = self._speech_refusal(seen)
        if refusal:
            await _json(send, *refusal)
            return
        text = seen.json["text"]
        fmt = (seen.query.get("output_format") or ["mp3_44100_128"])[0]
        audio, content_type, chunk_size = speech_audio(text, fmt)
        model = seen.json.get("model_id", "eleven_multilingual_v2")
        headers = {
            "content-type": content_type,
            "request-id": f"req-{len(self.requests)}",
            "character-cost": str(math.ceil(len(text) * TTS_MODELS[model])),
        }
        if seen.scenario != "no-count":
            count = self.character_count if self.character_count is not None else len(text)
            headers["x-character-count"] = str(count)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})  # fmt: skip
        for n, start in enumerate(range(0, len(audio), chunk_size)):
            if seen.scenario == "reset" and n == 2:
                raise ConnectionResetError("the fake drops the stream")  # uvicorn aborts it
            await send({"type": "http.response.body", "body": audio[start : start + chunk_size],
                        "more_body": True})  # fmt: skip
            if seen.scenario == "hold" and n == 0:
                await self._wait_for_release()
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.streams_finished += 1

    async def _wait_for_release(self) -> None:
        await asyncio.to_thread(self.release.wait, 10)

    # --- speech to text -----------------------------------------------------------------

    def _transcription_refusal(self, seen: Seen, seconds: float | None):
        form = seen.form
        model = (form.get("model_id") or [""])[0]
        if not model:
            return 422, validation_error(["body", "model_id"], "Field required", "missing")
        if model not in STT_MODELS:
            return 400, detail("invalid_model_id", f"Model {model} is not a speech to text model.")
        if not seen.file_name:
            message = "Must provide either file or cloud_storage_url parameter."
            return 400, detail("invalid_parameters", message)
        granularity = (form.get("timestamps_granularity") or ["word"])[0]
        if granularity not in ("none", "word", "character"):
            return 422, validation_error(["body", "timestamps_granularity"],
                                         "Input should be 'none', 'word' or 'character'",
                                         "enum", granularity)  # fmt: skip
        for flag in ("diarize", "tag_audio_events"):
            if (form.get(flag) or ["false"])[0] not in ("true", "false"):
                message = "Input should be a valid boolean"
                return 422, validation_error(["body", flag], message, "bool_parsing")
        if "keyterms" in form:
            try:
                terms = json.loads(form["keyterms"][0])
            except ValueError:
                terms = None
            if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
                message = "Input should be a valid list of strings"
                return 422, validation_error(["body", "keyterms"], message, "list_type")
            if not model.startswith("scribe_v2"):
                return 400, detail(
                    "invalid_parameters", "Keyterms are only supported by scribe_v2."
                )
            if any(len(t) >= 50 or len(t.split()) > 5 for t in terms):
                message = "Keyterms must be under 50 characters and at most 5 words."
                return 400, detail("invalid_parameters", message)
        if seconds is None:
            return 400, detail("invalid_audio", "The uploaded file could not be decoded.")
        return None

    async def _speech_to_text(self, seen: Seen, send) -> None:
        seconds = decoded_seconds(seen.file_bytes) if seen.file_bytes else None
        refusal = self._transcription_refusal(seen, seconds)
        if refusal:
            await _json(send, *refusal)
            return
        form = seen.form
        diarize = form.get("diarize") == ["true"]
        events = form.get("tag_audio_events") == ["true"]
        words = scribe_words(seconds, diarize, events)
        if form.get("timestamps_granularity") == ["none"]:
            words = []
        body = {
            "language_code": (form.get("language_code") or ["eng"])[0],
            "language_probability": 0.98,
            "text": "".join(w["text"] for w in scribe_words(seconds, diarize, events)),
            "words": words,
            "transcription_id": f"tr-{len(self.requests)}",
        }
        if seen.scenario != "no-duration":
            body["audio_duration_secs"] = round(seconds, 3)
        await _json(send, 200, body)


async def _json(send, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_fake() -> tuple[str, Callable[[], None]]:
    """A running fake: (the base URL of its `ok` behaviour, a function that stops it).
    Its key is API_KEY. For the bench, which measures the adapter against the fake direct."""
    fake = ElevenLabsFake().start()
    return fake.url("ok"), fake.stop
