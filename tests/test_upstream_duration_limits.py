"""Upstream models with a longest audio (`max_duration_seconds`, as OpenAI's gpt-4o-transcribe
takes at most 1,400 s): longer audio is cut at pauses, the pieces transcribed concurrently
and stitched with continuous timestamps; diarized, the first piece's speakers are sent as
known speakers (a clip of each voice) with the later pieces, so labels agree throughout.

The upstream is a loopback fake of OpenAI's transcription endpoint that enforces each
model's limit as OpenAI does (its 400, word for word) and diarizes as a real diarizer
would, per request: the speech here is tone bursts, each voice its own pitch; the first
voice a request hears is "A", the next "B", unless a known speaker's reference clip has
that pitch, whose name it then gets. The official SDK talks to ARouter, ARouter to it.

References: https://platform.openai.com/docs/api-reference/audio/createTranscription,
https://platform.openai.com/docs/guides/speech-to-text#speaker-diarization (known speaker
references: 2-10 s clips as data URLs, at most 4). OpenAI's refusal of long audio, as its
API sends it: `{"error": {"message": "audio duration 1830.530612 seconds is longer than
1400 seconds which is the maximum for this model", "type": "invalid_request_error",
"param": null, "code": "invalid_value"}}` (quoted in murtaza-nasir/speakr#168).
"""

import base64
import io
import json
import math
import time
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest

from gateway.audio.encode import wav_file
from gateway.catalog import CatalogError, catalog
from gateway.providers import provider_for
from tests.upstream_helpers import catalog_from, model_table, upstream_table
from tests.vendor_fakes.loopback import LoopbackServer, Request, Response, json_response
from usage.models import UsageRecord

API_KEY = "sk-fake-duration-limited-5678"
KEY_ENV = "ARDURATION_TEST_KEY"
RATE = 16_000
LIMIT = 20  # seconds: each fake model's longest audio (OpenAI's is 1,400)
TRANSCRIBE = "gpt-4o-transcribe"
DIARIZE = "gpt-4o-transcribe-diarize"
WHISPER = "whisper-1"  # no duration limit, as at OpenAI
LIMITS = {TRANSCRIBE: LIMIT, DIARIZE: LIMIT}
# Each voice's pitch (Hz) and the word the fake hears it say.
VOICES = {"alto": 300, "tenor": 700, "bass": 1100}
WORDS = {pitch: name for name, pitch in VOICES.items()}
TURN_SECONDS, PAUSE_SECONDS = 1.6, 0.4
MINUTE = {"per_audio_minute": 0.006}
BAD_LIMITS = {"zero": "0", "negative": "-5", "text": '"long"', "bool": "true"}


# --- speech: tone bursts, a pitch per voice ------------------------------------------------


def speech(turns: list[str]) -> np.ndarray:
    """Each turn spoken by its voice for TURN_SECONDS, a pause after each (16 kHz int16)."""
    t = np.arange(int(TURN_SECONDS * RATE)) / RATE
    pause = np.zeros(int(PAUSE_SECONDS * RATE))
    parts = []
    for voice in turns:
        parts += [0.3 * np.sin(2 * np.pi * VOICES[voice] * t), pause]
    return (np.concatenate(parts) * 32767).astype(np.int16)


def flac(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def decode(audio: bytes) -> np.ndarray:
    chunks = []
    with av.open(io.BytesIO(audio)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def turns_heard(samples: np.ndarray) -> list[tuple[float, float, int]]:
    """(start, end, pitch) of each stretch of sound: the fake's ears."""
    frame = RATE // 100
    count = len(samples) // frame
    loud = np.abs(samples[: count * frame].reshape(count, frame)).max(axis=1) > 300
    turns, start = [], None
    for i, on in enumerate([*loud, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            if i - start >= 5:  # under 50 ms is a click, not a word
                part = samples[start * frame : i * frame].astype(np.float32)
                spectrum = np.abs(np.fft.rfft(part))
                pitch = float(np.argmax(spectrum)) * RATE / len(part)
                turns.append((start / 100, i / 100, min(WORDS, key=lambda p: abs(p - pitch))))
            start = None
    return turns


# --- the fake OpenAI ---------------------------------------------------------------------


def _error(status: int, message: str, param: str | None, code: str | None) -> Response:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return json_response(status, {"error": body})


class FakeOpenAI:
    """POST /v1/audio/transcriptions with OpenAI's duration limits and a diarizer."""

    def __init__(self) -> None:
        self.server = LoopbackServer(self._handle)

    def start(self) -> "FakeOpenAI":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return f"{self.server.url}/v1"

    def reset(self) -> None:
        self.server.requests.clear()

    def received(self) -> list[tuple[dict[str, list[str]], bytes]]:
        """Each transcription request's fields and file, in the order they arrived."""
        forms = [request.form() for request in self.server.requests]
        return [(fields, files["file"].content) for fields, files in forms]

    async def _handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return _error(401, "Incorrect API key provided.", None, "invalid_api_key")
        if request.path != "/v1/audio/transcriptions":
            return _error(404, "Invalid URL", None, None)
        fields, files = request.form()
        form = {
            name: values if name.endswith("[]") else values[0] for name, values in fields.items()
        }
        samples = decode(files["file"].content)
        seconds = len(samples) / RATE
        model = form.get("model", "")
        limit = LIMITS.get(model)
        if limit is not None and seconds > limit:
            return _error(400, f"audio duration {seconds} seconds is longer than {limit} "
                          "seconds which is the maximum for this model", None,
                          "invalid_value")  # fmt: skip
        known = self._known_speakers(form)
        if isinstance(known, Response):
            return known
        turns = turns_heard(samples)
        text = " ".join(WORDS[pitch] for _, _, pitch in turns)
        usage = {"type": "duration", "seconds": math.ceil(seconds)}
        if form.get("response_format") != "diarized_json":
            return json_response(200, {"text": text, "usage": usage})
        if model != DIARIZE:
            return _error(400, f"response_format 'diarized_json' is not compatible with model "
                          f"'{model}'.", "response_format", "unsupported_value")  # fmt: skip
        segments = self._diarized(turns, known)
        body = {"task": "transcribe", "duration": seconds, "text": text, "segments": segments,
                "usage": usage}  # fmt: skip
        return json_response(200, body)

    def _known_speakers(self, form: dict[str, Any]) -> dict[int, str] | Response:
        """The known speakers' pitches and names, or OpenAI's 400 for a bad reference."""
        names = form.get("known_speaker_names[]", [])
        references = form.get("known_speaker_references[]", [])
        if len(names) > 4 or len(names) != len(references):
            return _error(400, "Invalid known speakers.", "known_speaker_names[]", None)
        known = {}
        for name, reference in zip(names, references, strict=True):
            head, _, payload = reference.partition(",")
            if not (head.startswith("data:audio/") and head.endswith(";base64")):
                return _error(400, "Invalid data URL.", "known_speaker_references[]", None)
            clip = decode(base64.b64decode(payload))
            if not 2 <= len(clip) / RATE <= 10:
                return _error(400, "Each known speaker reference must be between 2 and 10 "
                              "seconds.", "known_speaker_references[]", None)  # fmt: skip
            for _, _, pitch in turns_heard(clip):
                known[pitch] = name
        return known

    def _diarized(self, turns: list[tuple[float, float, int]], known: dict[int, str]) -> list:
        labels = dict(known)
        letters = (chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in known.values())
        segments = []
        for i, (start, end, pitch) in enumerate(turns):
            if pitch not in labels:
                labels[pitch] = next(letters)  # in the order this request heard them
            segments.append({"type": "transcript.text.segment", "id": f"seg_{i:03d}",
                             "start": start, "end": end, "text": WORDS[pitch],
                             "speaker": labels[pitch]})  # fmt: skip
        return segments


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def limits_catalog(fake: FakeOpenAI) -> str:
    text = upstream_table("openai", fake.url, KEY_ENV, backoff_base=0.01)
    # OpenAI's gpt-4o models answer json (no verbose_json); the limit is the model's.
    text += model_table("limited/transcribe", "transcription", "openai", TRANSCRIBE,
                        price=MINUTE, options={"transcript_format": "json",
                                               "max_duration_seconds": LIMIT})  # fmt: skip
    text += model_table("unlimited/transcribe", "transcription", "openai", TRANSCRIBE,
                        price=MINUTE, options={"transcript_format": "json"})  # fmt: skip
    text += model_table("limited/diarize", "transcription", "openai", DIARIZE, price=MINUTE,
                        options={"transcript_format": "json",
                                 "max_duration_seconds": LIMIT})  # fmt: skip
    # The upstream table's limit holds for each of its models that sets none of its own.
    text += upstream_table("capped", fake.url, KEY_ENV, max_duration_seconds=LIMIT)
    text += model_table("capped/transcribe", "transcription", "capped", TRANSCRIBE,
                        options={"transcript_format": "json"})  # fmt: skip
    text += model_table("capped/whisper", "transcription", "capped", WHISPER,
                        options={"max_duration_seconds": 600})  # fmt: skip
    for name, bad in BAD_LIMITS.items():
        text += f'[models."bad/{name}"]\nkind = "transcription"\nprovider = "upstream"\n'
        text += f'upstream = "openai"\ntarget = "{TRANSCRIBE}"\n'
        text += f"options = {{ max_duration_seconds = {bad} }}\n\n"
    return text


@pytest.fixture
def openai_upstream(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    fake.reset()
    with catalog_from(tmp_path / "catalog.toml", limits_catalog(fake)):
        yield fake


def record_of(key) -> UsageRecord:
    """The key's usage row, once finished (a stream's row just after its last byte)."""
    deadline = time.monotonic() + 10
    while True:
        row = UsageRecord.objects.finished().filter(api_key=key.api_key).first()
        if row is not None or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def piece_seconds(fake: FakeOpenAI) -> list[float]:
    return [len(decode(file)) / RATE for _, file in fake.received()]


# Alto and tenor take turns, tenor now and then twice: 25 turns, 50 s.
CONVERSATION = ["alto", "tenor", "tenor", "alto", "tenor"] * 5


# --- plain transcription -------------------------------------------------------------------


def test_without_the_limit_openai_refuses_long_audio(openai_client, openai_upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.transcriptions.create(
            model="unlimited/transcribe", file=("talk.wav", wav_file(speech(CONVERSATION), RATE))
        )
    assert caught.value.body["message"] == (
        "audio duration 50.0 seconds is longer than 20 seconds which is the maximum for this model"
    )


def test_audio_over_the_limit_is_cut_at_pauses_and_stitched(
    openai_client, openai_upstream, live_key
):
    samples = speech(CONVERSATION)
    transcript = openai_client.audio.transcriptions.create(
        model="limited/transcribe", file=("talk.wav", wav_file(samples, RATE))
    )
    pieces = piece_seconds(openai_upstream)
    assert len(pieces) == 3
    assert all(seconds <= LIMIT for seconds in pieces)
    assert sum(pieces) == pytest.approx(50.0, abs=1e-3)  # every sample sent once
    # Cut in pauses: no turn is split, so the words are the script's, in order.
    assert transcript.text == " ".join(CONVERSATION)
    row = record_of(live_key)
    assert (row.model, row.status_code, row.audio_seconds_in) == ("limited/transcribe", 200, 50)


def test_a_small_file_over_the_limit_is_cut_though_its_size_is_allowed(
    openai_client, openai_upstream
):
    # Mostly silence compresses to little: the header's duration, not the size, tells.
    samples = np.concatenate([speech(["alto"]), np.zeros(40 * RATE, np.int16), speech(["bass"])])
    audio = flac(samples)
    assert len(audio) < 200_000
    transcript = openai_client.audio.transcriptions.create(
        model="limited/transcribe", file=("quiet.flac", audio)
    )
    assert len(openai_upstream.received()) == 3
    assert transcript.text == "alto bass"


def test_audio_within_the_limit_is_sent_as_it_came(openai_client, openai_upstream):
    audio = flac(speech(["alto", "tenor"] * 4))  # 16 s
    transcript = openai_client.audio.transcriptions.create(
        model="limited/transcribe", file=("short.flac", audio)
    )
    [(_, sent)] = openai_upstream.received()
    assert sent == audio
    assert transcript.text == "alto tenor " * 3 + "alto tenor"


def test_the_upstream_tables_limit_applies_where_a_model_sets_none(openai_client, openai_upstream):
    openai_client.audio.transcriptions.create(
        model="capped/transcribe", file=("talk.wav", wav_file(speech(CONVERSATION), RATE))
    )
    assert len(openai_upstream.received()) == 3
    openai_upstream.reset()
    openai_client.audio.transcriptions.create(
        model="capped/whisper", file=("talk.wav", wav_file(speech(CONVERSATION), RATE))
    )
    assert len(openai_upstream.received()) == 1  # its own limit, 600 s, holds 50 s


@pytest.mark.parametrize("name", sorted(BAD_LIMITS))
def test_a_limit_that_is_no_positive_number_is_a_catalog_error(openai_upstream, name):
    with pytest.raises(CatalogError) as caught:
        provider_for(catalog().models[f"bad/{name}"])
    assert str(caught.value).startswith(
        f'[models."bad/{name}"] options.max_duration_seconds: must be a positive number'
    )


# --- diarized: labels that agree across pieces ---------------------------------------------


def labels_by_voice(segments) -> dict[str, set[str]]:
    voices: dict[str, set[str]] = {}
    for segment in segments:
        voices.setdefault(segment["text"], set()).add(segment["speaker"])
    return voices


def diarize(client, samples: np.ndarray, **fields):
    raw = client.audio.transcriptions.with_raw_response.create(
        model="limited/diarize",
        file=("talk.wav", wav_file(samples, RATE)),
        response_format="diarized_json",
        chunking_strategy="auto",
        **fields,
    )
    return json.loads(raw.text)


def test_speaker_labels_agree_across_pieces(openai_client, openai_upstream, live_key):
    body = diarize(openai_client, speech(CONVERSATION))
    assert labels_by_voice(body["segments"]) == {"alto": {"A"}, "tenor": {"B"}}
    # Timestamps run on across the pieces: each turn where the script puts it.
    starts = [segment["start"] for segment in body["segments"]]
    expected = [i * (TURN_SECONDS + PAUSE_SECONDS) for i in range(len(CONVERSATION))]
    assert starts == pytest.approx(expected, abs=0.02)
    assert body["duration"] == pytest.approx(50.0)
    received = openai_upstream.received()
    assert len(received) == 3
    first, *later = (fields for fields, _ in received)
    assert "known_speaker_names[]" not in first  # the first piece is heard as it is
    for fields in later:
        assert fields["known_speaker_names[]"] == ["B", "A"]  # tenor spoke most, then alto
        assert fields["chunking_strategy"] == ["auto"]
    assert record_of(live_key).audio_seconds_in == 50


def test_without_references_a_later_piece_would_be_labelled_on_its_own(
    openai_client, openai_upstream
):
    """The control: the second piece sent alone names whoever it hears first "A"."""
    diarize(openai_client, speech(CONVERSATION))
    # The later pieces are sent together, in no set order: the second is the longer one.
    second = max((file for _, file in openai_upstream.received()[1:]), key=len)
    alone = httpx.post(
        f"{openai_upstream.url}/audio/transcriptions",
        headers={"authorization": f"Bearer {API_KEY}"},
        data={"model": DIARIZE, "response_format": "diarized_json", "chunking_strategy": "auto"},
        files={"file": ("piece.wav", second)},
    ).json()
    assert alone["segments"][0]["text"] == "tenor"
    assert labels_by_voice(alone["segments"]) == {"tenor": {"A"}, "alto": {"B"}}


def test_the_clients_known_speakers_name_their_voices_in_every_piece(
    openai_client, openai_upstream
):
    reference = (
        "data:audio/wav;base64,"
        + base64.b64encode(wav_file(speech(["alto", "alto"]), RATE)).decode()
    )
    body = diarize(
        openai_client,
        speech(CONVERSATION),
        known_speaker_names=["agent"],
        known_speaker_references=[reference],
    )
    assert labels_by_voice(body["segments"]) == {"alto": {"agent"}, "tenor": {"A"}}
    for fields, _ in openai_upstream.received()[1:]:
        assert fields["known_speaker_names[]"] == ["agent", "A"]
        assert fields["known_speaker_references[]"][0] == reference  # as the client sent it


def test_a_voice_new_in_a_later_piece_gets_a_label_of_its_own(openai_client, openai_upstream):
    turns = ["alto", "tenor"] * 5 + ["bass", "alto"] * 5 + ["tenor", "bass"] * 5  # 60 s
    body = diarize(openai_client, speech(turns))
    voices = labels_by_voice(body["segments"])
    assert (voices["alto"], voices["tenor"]) == ({"A"}, {"B"})
    assert voices["bass"].isdisjoint({"A", "B"})


def test_a_streamed_diarized_transcript_of_long_audio_agrees_too(openai_client, openai_upstream):
    stream = openai_client.audio.transcriptions.create(
        model="limited/diarize",
        file=("talk.wav", wav_file(speech(CONVERSATION), RATE)),
        response_format="diarized_json",
        chunking_strategy="auto",
        stream=True,
    )
    segments = [event.model_dump() for event in stream if event.type == "transcript.text.segment"]
    assert labels_by_voice(segments) == {"alto": {"A"}, "tenor": {"B"}}
    assert len(segments) == len(CONVERSATION)
