"""Realtime (/v1/realtime) benchmarks, one section per subcommand.

    .venv/bin/python bench/realtime.py relay [--turns 10] [--stub-turns 200]
                                             [--sessions 20] [--seconds 10]
    .venv/bin/python bench/realtime.py voice [--turns 10]

`relay`: what relaying a realtime session to an upstream costs (gateway.realtime.relay).
Three processes on loopback, each alone on its port: a second ARouter (the "peer", its
offline cascade), a stub realtime upstream (answers at once, so only the relay's own time
shows), and the ARouter under test, one worker, whose catalog routes `peer/realtime` and
`stub/realtime` to them with `options.realtime = true`.

- First audio latency, from sending `response.create` to the first
  `response.output_audio.delta`, straight to the upstream and through ARouter, turns
  alternating between the two: the median of each, the difference in ms and the ratio.
  On the peer every turn is a fresh session that has already sent and committed the same
  spoken question (temperature 0, so the same reply); on the stub it is the relay alone.
- 20 concurrent relayed sessions streaming audio both ways in real time: each sends 20 ms
  `input_audio_buffer.append` frames on a 20 ms clock inside one response and the stub
  echoes each as a `response.output_audio.delta`. Frames sent vs received each way, echoes
  that differ from what was sent, echo round trip p50/p99 (through ARouter vs straight to
  the stub at the same concurrency), and the ledger rows the responses left.

`voice`: voice-to-voice latency on the offline cascade (local/audio-chat) of one live
ARouter. Ten questions spoken by its Piper are streamed as a microphone streams them,
100 ms `input_audio_buffer.append` frames on a 100 ms clock (silence goes on while the
reply plays), to a server VAD session (OpenAI's default turn detection). Each stage is
timed by when the client receives the server's events: from `speech_stopped` to
`committed`, to `input_audio_transcription.completed`, to `response.created`, to the first
`output_audio_transcript.delta` (first text) and to the first `output_audio.delta`, the
voice-to-voice figure (median and p90). The same speech on a push-to-talk session
(`turn_detection: null`: commit and response.create when the speech ends) is the
baseline, from sending the commit; turns alternate between the two sessions, after a
warm-up turn of each.
"""

import argparse
import asyncio
import base64
import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
from live_arouter import free_port, start_arouter, wait_for_port
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

BASE_DIR = Path(__file__).resolve().parent.parent
os.environ.setdefault("AROUTER_CACHE_DIR", str(BASE_DIR / "data" / "models"))  # no downloads
QUESTION = "What is the capital of France?"
FRAME_SECONDS = 0.02
FRAME_BYTES = int(24_000 * 2 * FRAME_SECONDS)  # 20 ms of 24 kHz pcm16
FIRST_AUDIO = base64.b64encode(b"\0" * 4800).decode()  # the stub's 100 ms answer
PEER_KEY_ENV, STUB_KEY_ENV = "ARBENCH_PEER_KEY", "ARBENCH_STUB_KEY"


def event(type: str, **fields) -> str:
    return json.dumps({"type": type, **fields})


# --- the stub upstream (its own process: `realtime.py stub --port N`) ---------------------


async def stub_session(ws) -> None:
    """A realtime upstream with no model behind it: a response.create is answered with
    response.created, 100 ms of audio and response.done at once; inside a response whose
    metadata asks `bench: stream`, each appended frame is echoed as an audio delta until
    the client sends `bench.done` (then response.done, and `bench.count`)."""
    model = parse_qs(urlparse(ws.request.path).query)["model"][0]
    output = {"format": {"type": "audio/pcm", "rate": 24000}}
    session = {"type": "realtime", "model": model, "audio": {"output": output}}
    await ws.send(event("session.created", session=session))
    responses, appends, streaming = 0, 0, None
    async for text in ws:
        message = json.loads(text)
        kind = message.get("type")
        if kind == "response.create":
            responses += 1
            response_id = f"resp_{responses}"
            where = {"response_id": response_id, "item_id": f"item_{responses}"}
            where.update(output_index=0, content_index=0)
            await ws.send(event("response.created", response={"id": response_id}))
            metadata = (message.get("response") or {}).get("metadata") or {}
            if metadata.get("bench") == "stream":
                streaming = where
                continue
            await ws.send(event("response.output_audio.delta", **where, delta=FIRST_AUDIO))
            await ws.send(event("response.done", response=_done(response_id, 1)))
        elif kind == "input_audio_buffer.append":
            appends += 1
            if streaming:
                echo = event("response.output_audio.delta", **streaming, delta=message["audio"])
                await ws.send(echo)
        elif kind == "bench.done" and streaming:
            await ws.send(event("response.done", response=_done(streaming["response_id"], appends)))
            await ws.send(event("bench.count", appends=appends))
            streaming = None
        elif kind == "session.update":
            await ws.send(event("session.updated", session={**session, **message["session"]}))


def _done(response_id: str, frames: int) -> dict:
    audio_tokens = max(1, round(frames * FRAME_SECONDS * 10))
    usage = {
        "total_tokens": 10 + audio_tokens,
        "input_tokens": 10,
        "output_tokens": audio_tokens,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
    }
    return {"id": response_id, "status": "completed", "usage": usage}


async def serve_stub(port: int) -> None:
    async with ws_serve(stub_session, "127.0.0.1", port, max_size=None, compression=None):
        await asyncio.Future()


# --- the three servers ------------------------------------------------------------------------


def catalog_text() -> str:
    base = (BASE_DIR / "gateway" / "catalog.toml").read_text()
    tables = []
    for name, key_env, target in (
        ("peer", PEER_KEY_ENV, "local/audio-chat"),
        ("stub", STUB_KEY_ENV, "stub-realtime"),
    ):
        tables.append(f"""
[upstreams.{name}]
base_url = "{{{name}_url}}"
api_key_env = "{key_env}"

[models."{name}/realtime"]
kind = "chat"
provider = "upstream"
upstream = "{name}"
target = "{target}"
input_modalities = ["text", "audio"]
output_modalities = ["text", "audio"]
price = {{ per_million_text_input_tokens = 4, per_million_audio_output_tokens = 64 }}
options = {{ realtime = true, audio_tokens_per_second = 10 }}
""")
    return base + "".join(tables)


class Servers:
    """The peer, the stub and the ARouter under test (one worker), and where to reach them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.processes: list[subprocess.Popen] = []

    def start(self) -> "Servers":
        peer, self.peer_port, self.peer_key = start_arouter(self.work / "peer")
        self.processes.append(peer)
        self.stub_port = free_port()
        script = [sys.executable, __file__, "stub", "--port", str(self.stub_port)]
        self.processes.append(subprocess.Popen(script))
        wait_for_port(self.stub_port, self.processes[-1])
        catalog = self.work / "catalog.toml"
        catalog.write_text(
            catalog_text()
            .replace("{peer_url}", f"http://127.0.0.1:{self.peer_port}/v1")
            .replace("{stub_url}", f"http://127.0.0.1:{self.stub_port}/v1")
        )
        env = {"AROUTER_CATALOG": str(catalog), PEER_KEY_ENV: self.peer_key, STUB_KEY_ENV: "x"}
        gateway, self.port, self.key = start_arouter(self.work / "gateway", env, workers=1)
        self.processes.append(gateway)
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def route(self, upstream: str, relayed: bool) -> tuple[str, str]:
        """(URL, key) of a realtime session on `upstream`, through ARouter or straight."""
        if relayed:
            url = f"ws://127.0.0.1:{self.port}/v1/realtime?model={upstream}/realtime"
            return url, self.key
        if upstream == "peer":
            url = f"ws://127.0.0.1:{self.peer_port}/v1/realtime?model=local/audio-chat"
            return url, self.peer_key
        return f"ws://127.0.0.1:{self.stub_port}/v1/realtime?model=stub-realtime", "x"

    def ledger(self, model: str) -> tuple[int, float, float]:
        """(rows, audio seconds out, cost) the gateway's ledger holds for `model`, 200s."""
        with sqlite3.connect(self.work / "gateway" / "arouter.sqlite3") as db:
            return db.execute(
                "SELECT COUNT(*), COALESCE(SUM(audio_seconds_out), 0), COALESCE(SUM(cost), 0)"
                " FROM usage_usagerecord WHERE model = ? AND status_code = 200",
                (model,),
            ).fetchone()


async def open_session(url: str, key: str) -> ClientConnection:
    ws = await ws_connect(
        url,
        additional_headers={"Authorization": f"Bearer {key}"},
        max_size=None,
        compression=None,
        open_timeout=60,
    )
    created = json.loads(await ws.recv())
    assert created["type"] == "session.created", created
    return ws


async def until(ws: ClientConnection, kind: str) -> dict:
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == kind:
            return message
        if message["type"] == "error":
            raise RuntimeError(message)


# --- first audio latency ----------------------------------------------------------------------


async def first_audio_after_request(ws: ClientConnection) -> float:
    """Seconds from sending response.create to the first audio delta (then to its end)."""
    start = time.perf_counter()
    await ws.send(event("response.create"))
    await until(ws, "response.output_audio.delta")
    seconds = time.perf_counter() - start
    await until(ws, "response.done")
    return seconds


async def peer_turn(servers: Servers, relayed: bool, frames: list[str]) -> float:
    """A fresh session on the peer that has said and committed the question."""
    ws = await open_session(*servers.route("peer", relayed))
    try:
        session = {"max_output_tokens": 12, "temperature": 0}
        await ws.send(event("session.update", session=session))
        await until(ws, "session.updated")
        for frame in frames:
            await ws.send(event("input_audio_buffer.append", audio=frame))
        await ws.send(event("input_audio_buffer.commit"))
        await until(ws, "conversation.item.input_audio_transcription.completed")
        return await first_audio_after_request(ws)
    finally:
        await ws.close()


def question_frames(servers: Servers) -> list[str]:
    """The question spoken by the peer's Piper, as 100 ms append frames."""
    speech = f"http://127.0.0.1:{servers.peer_port}/v1/audio/speech"
    response = httpx.post(
        speech,
        headers={"Authorization": f"Bearer {servers.peer_key}"},
        json={
            "model": "local/piper",
            "input": QUESTION,
            "voice": "alloy",
            "response_format": "pcm",
        },
        timeout=120,
    )
    response.raise_for_status()
    pcm, step = response.content, 4800
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


async def alternating(turn: Callable[[bool], Awaitable[float]], turns: int) -> dict:
    """Median first-audio seconds straight and relayed, turns alternating (after a
    warm-up of each, not counted)."""
    await turn(False)
    await turn(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for index in range(turns):
        for relayed in (index % 2 == 0, index % 2 != 0):
            times[relayed].append(await turn(relayed))
    direct, relayed = statistics.median(times[False]), statistics.median(times[True])
    return {"direct": direct, "relayed": relayed, "times": times}


def print_latency(name: str, result: dict) -> None:
    direct, relayed = result["direct"], result["relayed"]
    spread = {
        route: f"{min(t) * 1000:.1f}-{max(t) * 1000:.1f}"
        for route, t in (("direct", result["times"][False]), ("relayed", result["times"][True]))
    }
    turns = len(result["times"][False])
    print(
        f"  {name:<5} {turns:>4} turns each: straight {direct * 1000:8.1f} ms"
        f"  via ARouter {relayed * 1000:8.1f} ms  difference {(relayed - direct) * 1000:+7.1f} ms"
        f"  ratio {relayed / direct:.3f}   (range straight {spread['direct']},"
        f" via ARouter {spread['relayed']} ms)"
    )


# --- concurrent streaming ---------------------------------------------------------------------


async def streaming_session(url: str, key: str, seconds: float, index: int) -> dict:
    """One session streaming 20 ms frames on a clock for `seconds`, echoed by the stub."""
    ws = await open_session(url, key)
    frames = round(seconds / FRAME_SECONDS)
    sent_at: list[float] = []
    payloads = [
        base64.b64encode(bytes([(index + i) % 256]) * FRAME_BYTES).decode() for i in range(frames)
    ]
    echoes: list[float] = []
    mismatched = 0

    async def receive() -> int:
        nonlocal mismatched
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "response.output_audio.delta":
                i = len(echoes)
                echoes.append(time.perf_counter() - sent_at[i])
                mismatched += message["delta"] != payloads[i]
            elif message["type"] == "bench.count":
                return message["appends"]
            elif message["type"] == "error":
                raise RuntimeError(message)

    try:
        await ws.send(event("response.create", response={"metadata": {"bench": "stream"}}))
        await until(ws, "response.created")
        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for i, payload in enumerate(payloads):
            await asyncio.sleep(max(0.0, start + i * FRAME_SECONDS - time.perf_counter()))
            sent_at.append(time.perf_counter())
            await ws.send(event("input_audio_buffer.append", audio=payload))
        await ws.send(event("bench.done"))
        upstream_got = await asyncio.wait_for(receiver, 60)
    finally:
        await ws.close()
    return {"sent": frames, "upstream_got": upstream_got, "echoed": len(echoes),
            "mismatched": mismatched, "echo_times": echoes}  # fmt: skip


async def concurrent_streams(
    servers: Servers, relayed: bool, sessions: int, seconds: float
) -> dict:
    url, key = servers.route("stub", relayed)
    results = await asyncio.gather(
        *(streaming_session(url, key, seconds, i) for i in range(sessions))
    )
    echo_times = sorted(t for r in results for t in r["echo_times"])
    return {
        **{f: sum(r[f] for r in results) for f in ("sent", "upstream_got", "echoed", "mismatched")},
        "p50": echo_times[len(echo_times) // 2],
        "p99": echo_times[int(len(echo_times) * 0.99)],
    }


def print_streams(name: str, result: dict) -> None:
    dropped_up, dropped_down = (
        result["sent"] - result["upstream_got"],
        result["upstream_got"] - result["echoed"],
    )
    print(
        f"  {name:<12} frames sent {result['sent']}, upstream got {result['upstream_got']}"
        f" (dropped {dropped_up}); echoes sent {result['upstream_got']}, client got"
        f" {result['echoed']} (dropped {dropped_down}), differing {result['mismatched']};"
        f" echo round trip p50 {result['p50'] * 1000:.1f} ms, p99 {result['p99'] * 1000:.1f} ms"
    )


# --- the relay section ------------------------------------------------------------------------


async def relay(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="arouter-bench-realtime-") as work:
        servers = Servers(Path(work)).start()
        try:
            frames = question_frames(servers)
            print(
                f"First audio delta after response.create (median; {os.cpu_count()} cores,"
                f" load average {os.getloadavg()[0]:.1f}):"
            )
            stub = await alternating(lambda r: stub_turn(servers, r), args.stub_turns)
            print_latency("stub", stub)
            peer = await alternating(lambda r: peer_turn(servers, r, frames), args.turns)
            print_latency("peer", peer)
            before = servers.ledger("stub/realtime")
            print(
                f"{args.sessions} concurrent sessions, {args.seconds:.0f} s of 20 ms frames"
                " each way, one ARouter worker:"
            )
            direct = await concurrent_streams(servers, False, args.sessions, args.seconds)
            print_streams("straight", direct)
            gateway_cpu = cpu_seconds(servers.processes[-1].pid)
            relayed = await concurrent_streams(servers, True, args.sessions, args.seconds)
            gateway_cpu = cpu_seconds(servers.processes[-1].pid) - gateway_cpu
            print_streams("via ARouter", relayed)
            relayed_frames = relayed["sent"] + relayed["echoed"]
            print(
                f"  ARouter's CPU: {gateway_cpu:.2f} s for {relayed_frames} frames relayed,"
                f" {gateway_cpu / relayed_frames * 1e6:.0f} us a frame:"
                f" {gateway_cpu / args.seconds:.0%} of one core at this rate;"
                f" load average {os.getloadavg()[0]:.1f}"
                " (others' work on the machine slows the round trips, not this)"
            )
            after = servers.ledger("stub/realtime")
            print(
                f"  ledger: {after[0] - before[0]} response rows, "
                f"{after[1] - before[1]:.1f} audio seconds out, ${after[2] - before[2]:.6f}"
            )
        finally:
            servers.stop()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_stub_sessions: dict[str, ClientConnection] = {}


async def stub_turn(servers: Servers, relayed: bool) -> float:
    """A turn on the stub, on one long session per route (the stub keeps no state)."""
    route = "relayed" if relayed else "direct"
    if route not in _stub_sessions:
        _stub_sessions[route] = await open_session(*servers.route("stub", relayed))
    return await first_audio_after_request(_stub_sessions[route])


# --- the voice section ------------------------------------------------------------------------

VOICE_QUESTIONS = (
    "What is the capital of France?",
    "How tall is the Eiffel Tower?",
    "Can you tell me a fun fact about the moon?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
    "How many legs does a spider have?",
    "What is the weather usually like in London?",
    "Who wrote the play Romeo and Juliet?",
    "What is a good name for a small dog?",
    "How far away is the sun from the earth?",
)
VOICE_FRAME_MS = 100
VOICE_FRAME_BYTES = 24_000 * 2 * VOICE_FRAME_MS // 1000
SILENT_FRAME = base64.b64encode(b"\0" * VOICE_FRAME_BYTES).decode()
# (label, the event whose first arrival ends the stage), in the order a turn gives them.
VAD_STAGES = (
    ("input_audio_buffer.committed", "input_audio_buffer.committed"),
    ("input_audio_transcription.completed",
     "conversation.item.input_audio_transcription.completed"),
    ("response.created", "response.created"),
    ("first output_audio_transcript.delta", "response.output_audio_transcript.delta"),
    ("first output_audio.delta", "response.output_audio.delta"),
)  # fmt: skip


def speech_pcm(port: int, key: str, text: str) -> bytes:
    """`text` spoken by the server's own Piper, as 24 kHz pcm16."""
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/audio/speech",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "local/piper", "input": text, "voice": "alloy", "response_format": "pcm"},
        timeout=120,
    )
    response.raise_for_status()
    return response.content


def speech_end_ms(pcm: bytes) -> int:
    """Where the voice in `pcm` ends (the last 10 ms above a loudness floor)."""
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) // 480 * 480], dtype="<i2").astype(np.float32)
    loud = np.flatnonzero(np.sqrt((samples.reshape(-1, 240) ** 2).mean(axis=1)) > 300)
    return int(loud[-1] + 1) * 10


def voice_frames(pcm: bytes) -> list[str]:
    step = VOICE_FRAME_BYTES
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


async def paced(ws: ClientConnection, frames: list[str], then_silence: bool) -> None:
    """Send `frames` on a 100 ms clock, as a microphone would (then silence, if asked,
    until cancelled: the microphone stays open while the reply plays)."""
    start = time.perf_counter()
    index = 0
    while index < len(frames) or then_silence:
        await asyncio.sleep(max(0.0, start + index * VOICE_FRAME_MS / 1000 - time.perf_counter()))
        audio = frames[index] if index < len(frames) else SILENT_FRAME
        await ws.send(event("input_audio_buffer.append", audio=audio))
        index += 1


async def first_arrivals(ws: ClientConnection, until_kind: str = "response.done") -> dict:
    """The perf_counter() time each event type first arrived, up to `until_kind`."""
    arrived: dict[str, float] = {}
    while True:
        message = json.loads(await ws.recv())
        arrived.setdefault(message["type"], time.perf_counter())
        if message["type"] == "error":
            raise RuntimeError(message)
        if message["type"] == until_kind:
            return arrived


async def vad_turn(ws: ClientConnection, speech: bytes) -> dict[str, float]:
    """One spoken turn on a server VAD session; seconds of each stage."""
    lead = b"\0" * (VOICE_FRAME_BYTES * 3)  # 300 ms of silence before the speech
    frames = voice_frames(lead + speech)
    sender = asyncio.create_task(paced(ws, frames, then_silence=True))
    speech_over = time.perf_counter() + (300 + speech_end_ms(speech)) / 1000
    try:
        arrived = await first_arrivals(ws)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    stopped = arrived["input_audio_buffer.speech_stopped"]
    stages = {"speech_stopped": stopped - speech_over}
    for label, kind in VAD_STAGES:
        stages[label] = arrived[kind] - stopped
    return stages


async def push_to_talk_turn(ws: ClientConnection, speech: bytes) -> dict[str, float]:
    """One turn as a push-to-talk client sends it: the speech on the clock, then commit;
    response.create once the turn is heard (conversation.item.done: sent at once, it
    would be answered before the turn is heard, see `commit_and_create_at_once`);
    seconds of each stage from sending the commit."""
    await paced(ws, voice_frames(speech + b"\0" * (VOICE_FRAME_BYTES * 2)), then_silence=False)
    committed_at = time.perf_counter()
    await ws.send(event("input_audio_buffer.commit"))
    heard = await first_arrivals(ws, until_kind="conversation.item.done")
    await ws.send(event("response.create"))
    arrived = {**await first_arrivals(ws), **heard}
    return {label: arrived[kind] - committed_at for label, kind in VAD_STAGES}


async def commit_and_create_at_once(ws: ClientConnection, speech: bytes) -> tuple[float, bool]:
    """commit and response.create sent together, as many push-to-talk clients send them:
    (ms from the commit to response.created, whether the turn was heard before it)."""
    await paced(ws, voice_frames(speech + b"\0" * (VOICE_FRAME_BYTES * 2)), then_silence=False)
    committed_at = time.perf_counter()
    await ws.send(event("input_audio_buffer.commit"))
    await ws.send(event("response.create"))
    arrived = await first_arrivals(ws)
    heard_first = arrived.get(VAD_STAGES[1][1], math.inf) < arrived["response.created"]
    if not heard_first:  # the turn's transcription still comes, after the reply
        await until(ws, VAD_STAGES[1][1])
    return (arrived["response.created"] - committed_at) * 1000, heard_first


async def voice_session(port: int, key: str, push_to_talk: bool) -> ClientConnection:
    ws = await open_session(f"ws://127.0.0.1:{port}/v1/realtime?model=local/audio-chat", key)
    session: dict = {"max_output_tokens": 40}  # the first audio comes long before
    if push_to_talk:
        session["audio"] = {"input": {"turn_detection": None}}
    await ws.send(event("session.update", session=session))
    await until(ws, "session.updated")
    return ws


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def print_stages(title: str, turns: list[dict[str, float]]) -> None:
    print(title)
    for label in turns[0]:
        values = [turn[label] * 1000 for turn in turns]
        print(
            f"  {label:<40} {statistics.median(values):8.0f} {percentile(values, 0.9):8.0f}"
            f" {min(values):8.0f} {max(values):8.0f}"
        )


async def voice(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="arouter-bench-voice-") as work:
        process, port, key = start_arouter(Path(work) / "voice")
        try:
            speeches = [speech_pcm(port, key, text) for text in VOICE_QUESTIONS]
            vad = await voice_session(port, key, push_to_talk=False)
            ptt = await voice_session(port, key, push_to_talk=True)
            await vad_turn(vad, speeches[0])  # warm-up: every model loaded and run once
            await push_to_talk_turn(ptt, speeches[0])
            vad_turns, ptt_turns = [], []
            for index in range(args.turns):  # alternating, so both see the same load
                speech = speeches[index % len(speeches)]
                vad_turns.append(await vad_turn(vad, speech))
                ptt_turns.append(await push_to_talk_turn(ptt, speech))
            at_once = await commit_and_create_at_once(ptt, speeches[1])
            await vad.close()
            await ptt.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"Voice-to-voice latency, offline cascade (local/audio-chat), {args.turns} turns each,"
        f" real speech in {VOICE_FRAME_MS} ms frames at real time;"
        f" {os.cpu_count()} cores, load average {load}"
    )
    print(f"  {'ms':<40} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    first = vad_turns[0]
    print_stages("server VAD: end of speech in the stream -> speech_stopped (silence_duration_ms)",
                 [{"speech_stopped": t["speech_stopped"]} for t in vad_turns])  # fmt: skip
    print_stages(
        "server VAD, from the client's receipt of input_audio_buffer.speech_stopped to:",
        [{label: t[label] for label in first if label != "speech_stopped"} for t in vad_turns],
    )
    print_stages(
        "push-to-talk (turn_detection null), from sending commit (response.create once heard):",
        ptt_turns,
    )
    median = statistics.median(t["first output_audio.delta"] for t in vad_turns)
    baseline = statistics.median(t["first output_audio.delta"] for t in ptt_turns)
    print(
        f"voice-to-voice (speech_stopped -> first audio) median {median * 1000:.0f} ms"
        f" (goal <= 800 ms); push-to-talk commit -> first audio {baseline * 1000:.0f} ms"
    )
    created_ms, heard_first = at_once
    print(
        f"push-to-talk, commit and response.create sent together: response.created"
        f" {created_ms:.0f} ms after the commit, "
        + ("after the turn was heard" if heard_first else "BEFORE the turn was heard")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    relay_parser = commands.add_parser("relay", help="what relaying to an upstream costs")
    relay_parser.add_argument("--turns", type=int, default=10, help="peer turns per route")
    relay_parser.add_argument("--stub-turns", type=int, default=200, help="stub turns per route")
    relay_parser.add_argument("--sessions", type=int, default=20)
    relay_parser.add_argument("--seconds", type=float, default=10.0, help="of streaming each")
    voice_parser = commands.add_parser("voice", help="voice-to-voice latency, offline cascade")
    voice_parser.add_argument("--turns", type=int, default=10, help="turns of each kind")
    stub_parser = commands.add_parser("stub", help="(internal) run the stub upstream")
    stub_parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.command == "stub":
        asyncio.run(serve_stub(args.port))
    elif args.command == "voice":
        asyncio.run(voice(args))
    else:
        asyncio.run(relay(args))


if __name__ == "__main__":
    main()
