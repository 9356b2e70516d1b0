"""Realtime (/v1/realtime) benchmarks, one section per subcommand.

    .venv/bin/python bench/realtime.py relay [--turns 10] [--stub-turns 200]
                                             [--sessions 20] [--seconds 10]

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

A voice-to-voice section (the offline cascade) belongs beside it as its own subcommand.
"""

import argparse
import asyncio
import base64
import json
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
            print(f"First audio delta after response.create (median; {os.cpu_count()} cores):")
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
            relayed = await concurrent_streams(servers, True, args.sessions, args.seconds)
            print_streams("via ARouter", relayed)
            after = servers.ledger("stub/realtime")
            print(
                f"  ledger: {after[0] - before[0]} response rows, "
                f"{after[1] - before[1]:.1f} audio seconds out, ${after[2] - before[2]:.6f}"
            )
        finally:
            servers.stop()


_stub_sessions: dict[str, ClientConnection] = {}


async def stub_turn(servers: Servers, relayed: bool) -> float:
    """A turn on the stub, on one long session per route (the stub keeps no state)."""
    route = "relayed" if relayed else "direct"
    if route not in _stub_sessions:
        _stub_sessions[route] = await open_session(*servers.route("stub", relayed))
    return await first_audio_after_request(_stub_sessions[route])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    relay_parser = commands.add_parser("relay", help="what relaying to an upstream costs")
    relay_parser.add_argument("--turns", type=int, default=10, help="peer turns per route")
    relay_parser.add_argument("--stub-turns", type=int, default=200, help="stub turns per route")
    relay_parser.add_argument("--sessions", type=int, default=20)
    relay_parser.add_argument("--seconds", type=float, default=10.0, help="of streaming each")
    stub_parser = commands.add_parser("stub", help="(internal) run the stub upstream")
    stub_parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.command == "stub":
        asyncio.run(serve_stub(args.port))
    else:
        asyncio.run(relay(args))


if __name__ == "__main__":
    main()
