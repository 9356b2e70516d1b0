"""A loopback OpenAI transcription endpoint with the newer features, for pass-through tests.

`POST /v1/audio/transcriptions` as OpenAI's API reference and OpenAPI document describe
it (openai/openai-openapi `openapi.json`: CreateTranscriptionRequest,
CreateTranscriptionResponseJson / ...DiarizedJson, the TranscriptText*Event schemas), for
three models, each with OpenAI's rules:

- `gpt-4o-transcribe-diarize`: response_format json, text or diarized_json;
  `chunking_strategy` required over 30 s ("chunking_strategy is required for diarization
  models"); `known_speaker_names[]` / `known_speaker_references[]` (at most 4, as many of
  each, data URLs); no `include[]`, no `prompt`. diarized_json labels speakers with the
  known names in turn, else "A", "B"; a stream sends `transcript.text.delta` events with
  their `segment_id`, then each segment's `transcript.text.segment`, then
  `transcript.text.done` with token usage.
- `gpt-4o-transcribe`: response_format json or text; `include[]=logprobs` gives a logprob
  per token (one token per word here) in the json answer, and in each delta and the done
  event of a stream.
- `whisper-1`: every format but diarized_json; `stream` is ignored (a whole answer).

The audio is really decoded: one segment (a word `wN`) per started second. The key must
come as `Authorization: Bearer`. Everything received is in `requests` (with `form()`).

A path's first element picks a behaviour: `ok`, or `lenient`, an "OpenAI-compatible"
server that ignores every field it does not know (answers json without speakers or
logprobs), as many do.

References: https://platform.openai.com/docs/api-reference/audio/createTranscription,
https://platform.openai.com/docs/guides/speech-to-text#speaker-diarization,
https://github.com/openai/openai-openapi (openapi.json, commit f85dbe2).
"""

import io
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import av

from tests.vendor_fakes.loopback import LoopbackServer, Request, Response, json_response

API_KEY = "sk-fake-openai-transcribe-4321"
DIARIZE = "gpt-4o-transcribe-diarize"
TRANSCRIBE = "gpt-4o-transcribe"
WHISPER = "whisper-1"
FORMATS = {
    DIARIZE: ("json", "text", "diarized_json"),
    TRANSCRIBE: ("json", "text"),
    WHISPER: ("json", "text", "srt", "verbose_json", "vtt"),
}


def _error(status: int, message: str, param: str | None, code: str | None = None) -> Response:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return json_response(status, {"error": body})


def _seconds(audio: bytes) -> float:
    samples, rate = 0, 16000
    with av.open(io.BytesIO(audio)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate


def _logprob(word: str, index: int) -> dict[str, Any]:
    return {"token": word, "logprob": -0.01 * (index + 1), "bytes": list(word.encode())}


class FakeOpenAITranscriptions:
    def __init__(self) -> None:
        self.server = LoopbackServer(self._handle)

    def start(self) -> "FakeOpenAITranscriptions":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def url(self, scenario: str = "ok") -> str:
        return f"{self.server.url}/{scenario}/v1"

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def last_form(self) -> dict[str, list[str]]:
        return self.requests[-1].form()[0]

    def reset(self) -> None:
        self.server.requests.clear()

    async def _handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return _error(401, "Incorrect API key provided.", None, "invalid_api_key")
        scenario, _, path = request.path.removeprefix("/").partition("/")
        if request.method != "POST" or path != "v1/audio/transcriptions":
            return _error(404, "Invalid URL", None)
        fields, files = request.form()
        form = {
            name: values if name.endswith("[]") else values[0] for name, values in fields.items()
        }
        seconds = _seconds(files["file"].content)
        if scenario == "lenient":
            return json_response(200, {"text": self._text(seconds)})
        return self._transcription(form, seconds)

    def _text(self, seconds: float) -> str:
        return " ".join(word for word, _, _ in self._words(seconds))

    def _words(self, seconds: float) -> list[tuple[str, float, float]]:
        count = max(math.ceil(seconds - 0.05), 1)
        return [(f"w{i}", float(i), min(i + 1.0, seconds)) for i in range(count)]

    def _transcription(self, form: dict[str, Any], seconds: float) -> Response:
        model = form.get("model", "")
        if model not in FORMATS:
            return _error(404, f"The model `{model}` does not exist.", "model", "model_not_found")
        fmt = form.get("response_format", "json")
        if fmt not in FORMATS[model]:
            others = " or ".join(f"'{f}'" for f in FORMATS[model][:2])
            return _error(400, f"response_format '{fmt}' is not compatible with model "
                          f"'{model}'. Use {others} instead.", "response_format",
                          "unsupported_value")  # fmt: skip
        if refusal := self._refusal(model, form, seconds):
            return refusal
        stream = form.get("stream") == "true" and model != WHISPER
        if model == DIARIZE:
            return self._diarized(form, seconds, stream)
        logprobs = form.get("include[]") == ["logprobs"]
        if stream:
            return Response(200, self._events(seconds, logprobs), "text/event-stream")
        body: dict[str, Any] = {"text": self._text(seconds)}
        if logprobs:
            body["logprobs"] = [_logprob(w, i) for i, (w, _, _) in enumerate(self._words(seconds))]
        body["usage"] = {"type": "duration", "seconds": math.ceil(seconds)}
        return json_response(200, body)

    def _refusal(self, model: str, form: dict[str, Any], seconds: float) -> Response | None:
        names = form.get("known_speaker_names[]", [])
        references = form.get("known_speaker_references[]", [])
        if model == DIARIZE:
            if "include[]" in form or "prompt" in form:
                param = "include[]" if "include[]" in form else "prompt"
                return _error(400, f"{param} is not supported for diarization models.", param)
            if seconds > 30 and "chunking_strategy" not in form:
                return _error(400, "chunking_strategy is required for diarization models",
                              "chunking_strategy")  # fmt: skip
            chunking = form.get("chunking_strategy")
            if chunking not in (None, "auto") and json.loads(chunking).get("type") != "server_vad":
                return _error(400, "Invalid chunking_strategy.", "chunking_strategy")
            if len(names) > 4 or len(names) != len(references):
                return _error(400, "Invalid known speakers.", "known_speaker_names[]")
            if any(not r.startswith("data:") for r in references):
                return _error(400, "Invalid data URL.", "known_speaker_references[]")
        elif names or references:
            return _error(400, "known speakers need a diarization model.", "known_speaker_names[]")
        if model == WHISPER and "include[]" in form:
            return _error(400, "logprobs are not supported with whisper-1.", "include[]")
        return None

    # --- diarization ----------------------------------------------------------------------

    def _speakers(self, form: dict[str, Any]) -> list[str]:
        return form.get("known_speaker_names[]") or ["A", "B"]

    def _segments(self, form: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
        speakers = self._speakers(form)
        return [
            {"type": "transcript.text.segment", "id": f"seg_{i:03d}", "start": start,
             "end": end, "text": word.upper(), "speaker": speakers[i % len(speakers)]}
            for i, (word, start, end) in enumerate(self._words(seconds))
        ]  # fmt: skip

    def _usage(self, seconds: float) -> dict[str, Any]:
        audio = math.ceil(seconds * 10)
        return {"type": "tokens", "input_tokens": audio,
                "input_token_details": {"audio_tokens": audio, "text_tokens": 0},
                "output_tokens": 3, "total_tokens": audio + 3}  # fmt: skip

    def _diarized(self, form: dict[str, Any], seconds: float, stream: bool) -> Response:
        segments = self._segments(form, seconds)
        text = " ".join(s["text"] for s in segments)
        if stream:
            return Response(
                200, self._diarized_events(segments, text, seconds), "text/event-stream"
            )
        if form.get("response_format") != "diarized_json":
            return json_response(200, {"text": text, "usage": self._usage(seconds)})
        body = {"task": "transcribe", "duration": seconds, "text": text, "segments": segments,
                "usage": self._usage(seconds)}  # fmt: skip
        return json_response(200, body)

    async def _diarized_events(
        self, segments: list[dict[str, Any]], text: str, seconds: float
    ) -> AsyncIterator[bytes]:
        for segment in segments:
            for piece in (segment["text"][:1], segment["text"][1:]):  # two deltas each
                delta = {"type": "transcript.text.delta", "delta": piece,
                         "segment_id": segment["id"]}  # fmt: skip
                yield _sse(delta)
            yield _sse(segment)
        yield _sse({"type": "transcript.text.done", "text": text, "usage": self._usage(seconds)})

    async def _events(self, seconds: float, logprobs: bool) -> AsyncIterator[bytes]:
        words = self._words(seconds)
        every = []
        for i, (word, _, _) in enumerate(words):
            delta: dict[str, Any] = {"type": "transcript.text.delta",
                                     "delta": word if i == 0 else f" {word}"}  # fmt: skip
            if logprobs:
                delta["logprobs"] = [_logprob(delta["delta"], i)]
                every += delta["logprobs"]
            yield _sse(delta)
        done: dict[str, Any] = {"type": "transcript.text.done", "text": self._text(seconds)}
        if logprobs:
            done["logprobs"] = every
        done["usage"] = self._usage(seconds)
        yield _sse(done)


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()
