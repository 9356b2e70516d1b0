"""What a gateway adds in front of an upstream: ARouter vs LiteLLM's proxy vs Portkey.

One run, one machine, one stub upstream on loopback (a minimal OpenAI-compatible server,
in its own process). The same requests go directly to the stub, through ARouter (key auth
and the usage ledger on, SQLite), through LiteLLM's proxy and through Portkey's gateway, each
gateway running alone beside the stub while it is measured:

- a 277 KB multipart transcription (an 8.6 s WAV) and a JSON speech request;
- requests/s at 16 concurrent keep-alive clients, measured with `ab` (apache2-utils), a
  load generator outside every gateway's interpreter;
- median latency at 1 client (Python's http.client on a kept-alive connection), minus the
  direct median: the latency each gateway adds;
- streaming passthrough: the stub sends its speech body in 10 chunks 100 ms apart; time to
  the first body byte, direct and through each gateway.

Peers are installed outside the repository, under AROUTER_PEERS_DIR (/work/peers): LiteLLM
in litellm-venv (`pip install 'litellm[proxy]==1.100.5'` in its own venv), Portkey in
portkey (`npm install @portkey-ai/gateway@1.15.2`). A peer that is missing is skipped and
said so.

    .venv/bin/python bench/overhead.py [--requests 2000] [--only arouter]

Per vendor adapter (Deepgram, ElevenLabs, AssemblyAI, Azure OpenAI, Gemini), ARouter in
front of each vendor's loopback fake against the fake direct (bench/vendor_overhead.py):

    .venv/bin/python bench/overhead.py vendors [--samples 300] [--only deepgram azure]
"""

import argparse
import asyncio
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
from pathlib import Path

import live_arouter
from live_arouter import free_port, wait_for_port

BASE_DIR = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("AROUTER_PEERS_DIR", "/work/peers"))
LITELLM = PEERS / "litellm-venv" / "bin" / "litellm"
PORTKEY = (
    PEERS / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
)
BOUNDARY = "----arouterbench7MA4YWxkTrZu0gW"
SPEECH_BYTES = 8192
STREAM_CHUNKS, STREAM_GAP = 10, 0.1
ARGS = argparse.Namespace(arouter_database_url="", arouter_workers=1)


# --- the stub upstream ----------------------------------------------------------------------


def run_stub(port: int) -> None:
    """A minimal OpenAI-compatible upstream: fixed answers, as fast as asyncio allows."""
    transcript = json.dumps(
        {
            "task": "transcribe",
            "language": "english",
            "duration": 8.6,
            "text": "The quick brown fox jumps over the lazy dog.",
            "segments": [],
            "usage": {"type": "duration", "seconds": 9},
        }
    ).encode()
    chat = json.dumps(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": "stub",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Hi."},
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    ).encode()
    audio = b"\xff\xf3" + b"\x00" * (SPEECH_BYTES - 2)

    def head(status: str, ctype: str, length: int | None) -> bytes:
        size = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
        return (
            f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\n{size}\r\n"
            "connection: keep-alive\r\n\r\n"
        ).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                length = 0
                chunked = False
                for line in raw.split(b"\r\n"):
                    lower = line.lower()
                    if lower.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    elif lower.startswith(b"transfer-encoding:") and b"chunked" in lower:
                        chunked = True
                if chunked:
                    body = b""
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                        body += await reader.readexactly(size + 2)
                        if size == 0:
                            break
                else:
                    body = await reader.readexactly(length)
                path = raw.split(b" ", 2)[1]
                if b"/audio/transcriptions" in path:
                    writer.write(head("200 OK", "application/json", len(transcript)) + transcript)
                elif b"/audio/speech" in path:
                    if b"tts-stream" in body:
                        writer.write(head("200 OK", "audio/mpeg", None))
                        piece = len(audio) // STREAM_CHUNKS
                        for _ in range(STREAM_CHUNKS):
                            writer.write(f"{piece:x}\r\n".encode() + audio[:piece] + b"\r\n")
                            await writer.drain()
                            await asyncio.sleep(STREAM_GAP)
                        writer.write(b"0\r\n\r\n")
                    else:
                        writer.write(head("200 OK", "audio/mpeg", len(audio)) + audio)
                elif b"/chat/completions" in path:
                    writer.write(head("200 OK", "application/json", len(chat)) + chat)
                elif b"/models" in path:
                    models = b'{"object":"list","data":[]}'
                    writer.write(head("200 OK", "application/json", len(models)) + models)
                else:
                    writer.write(head("404 Not Found", "application/json", 2) + b"{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# --- processes ------------------------------------------------------------------------------


class Target:
    """One way to reach the stub: its base URL, headers and model names."""

    def __init__(self, name, port, prefix, headers, stt_model, tts_model, stream_model):
        self.name = name
        self.port = port
        self.prefix = prefix
        self.headers = headers
        self.stt_model = stt_model
        self.tts_model = tts_model
        self.stream_model = stream_model


def start_arouter(stub_port: int, work: Path, procs: list) -> Target:
    data = work / "arouter"
    data.mkdir()
    catalog = data / "catalog.toml"
    catalog.write_text(
        f'[upstreams.stub]\nbase_url = "http://127.0.0.1:{stub_port}/v1"\n'
        'api_key_env = "BENCH_STUB_KEY"\n\n'
        '[models."bench/whisper"]\nkind = "transcription"\nprovider = "upstream"\n'
        'upstream = "stub"\ntarget = "whisper-1"\nprice = { per_audio_minute = 0.006 }\n\n'
        '[models."bench/tts"]\nkind = "speech"\nprovider = "upstream"\nupstream = "stub"\n'
        'target = "tts-1"\nprice = { per_million_characters = 15 }\n\n'
        '[models."bench/tts-stream"]\nkind = "speech"\nprovider = "upstream"\n'
        'upstream = "stub"\ntarget = "tts-stream"\nprice = { per_million_characters = 15 }\n'
    )
    env = {"AROUTER_CATALOG": str(catalog), "BENCH_STUB_KEY": "sk-stub"}
    if ARGS.arouter_database_url:
        env["DATABASE_URL"] = ARGS.arouter_database_url
    process, port, key = live_arouter.start_arouter(data, env, workers=ARGS.arouter_workers)
    procs.append(process)
    headers = {"Authorization": f"Bearer {key}"}
    return Target("arouter", port, "/v1", headers, "bench/whisper", "bench/tts",
                  "bench/tts-stream")  # fmt: skip


def start_litellm(stub_port: int, work: Path, procs: list) -> Target | None:
    if not LITELLM.exists():
        print(f"LiteLLM not found at {LITELLM}: skipped")
        return None
    config = work / "litellm.yaml"
    api_base = f"http://127.0.0.1:{stub_port}/v1"
    entries = ""
    for name in ("whisper-1", "tts-1", "tts-stream"):
        entries += (
            f"  - model_name: {name}\n    litellm_params:\n      model: openai/{name}\n"
            f"      api_base: {api_base}\n      api_key: sk-stub\n"
        )
    config.write_text(
        f"model_list:\n{entries}general_settings:\n  master_key: sk-litellm-bench\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    procs.append(
        subprocess.Popen(
            [str(LITELLM), "--config", str(config), "--port", str(port), "--num_workers", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    wait_for_port(port, procs[-1], 180)
    headers = {"Authorization": "Bearer sk-litellm-bench"}
    return Target("litellm", port, "/v1", headers, "whisper-1", "tts-1", "tts-stream")


def start_portkey(stub_port: int, work: Path, procs: list) -> Target | None:
    if not PORTKEY.exists() or not shutil.which("node"):
        print(f"Portkey not found at {PORTKEY}: skipped")
        return None
    port = free_port()
    procs.append(
        subprocess.Popen(
            ["node", str(PORTKEY), f"--port={port}", "--headless"],
            cwd=PORTKEY.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    wait_for_port(port, procs[-1])
    headers = {
        "Authorization": "Bearer sk-stub",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"http://127.0.0.1:{stub_port}/v1",
    }
    return Target("portkey", port, "/v1", headers, "whisper-1", "tts-1", "tts-stream")


# --- requests -------------------------------------------------------------------------------


def wav_277kb() -> bytes:
    seconds = 8.66
    rate = 16000
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            frames += (((i * 37) % 2000) - 1000).to_bytes(2, "little", signed=True)
        out.writeframes(bytes(frames))
    return buffer.getvalue()


def multipart(model: str, audio: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n',
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"'
        "\r\nContent-Type: audio/wav\r\n\r\n",
    ]
    return "".join(parts).encode() + audio + f"\r\n--{BOUNDARY}--\r\n".encode()


def speech_json(model: str) -> bytes:
    return json.dumps(
        {
            "model": model,
            "input": "The quick brown fox jumps over the lazy dog.",
            "voice": "alloy",
            "response_format": "mp3",
        }
    ).encode()


def requests_for(target: Target, audio: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {
        "transcription": (
            f"{target.prefix}/audio/transcriptions",
            multipart(target.stt_model, audio),
            f"multipart/form-data; boundary={BOUNDARY}",
        ),
        "speech": (
            f"{target.prefix}/audio/speech",
            speech_json(target.tts_model),
            "application/json",
        ),
    }


def one_request(conn: http.client.HTTPConnection, target, path, body, ctype) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={**target.headers, "Content-Type": ctype})
    response = conn.getresponse()
    return response.status, response.read()


def median_latency(target: Target, path: str, body: bytes, ctype: str, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    for _ in range(20):  # warm-up: pools, caches, first-use imports
        status, data = one_request(conn, target, path, body, ctype)
        if status != 200:
            raise RuntimeError(f"{target.name} {path}: HTTP {status}: {data[:200]!r}")
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        one_request(conn, target, path, body, ctype)
        samples.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(samples) * 1000


def ab_rps(target: Target, path: str, body: bytes | None, ctype: str, n: int, work: Path) -> float:
    """Requests/s at 16 kept-alive clients: a POST of `body`, or a GET without one."""
    cmd = ["ab", "-q", "-k", "-c", "16", "-n", str(n)]
    if body is not None:
        body_file = work / f"body-{target.name}-{abs(hash(path))}"
        body_file.write_bytes(body)
        cmd += ["-p", str(body_file), "-T", ctype]
    for name, value in target.headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(f"http://127.0.0.1:{target.port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"ab failed against {target.name}:\n{out}")
    errors = (int(failed.group(1)) if failed else 0) + (int(non2xx.group(1)) if non2xx else 0)
    if errors:
        print(f"  ({target.name} {path}: {errors} failed/non-2xx of {n})")
    return float(rps.group(1))


def first_byte(target: Target, n: int = 5) -> tuple[float, float]:
    """Median seconds to the first body byte and to the last, for the chunked speech."""
    path = f"{target.prefix}/audio/speech"
    body = speech_json(target.stream_model)
    firsts, totals = [], []
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
        started = time.perf_counter()
        conn.request("POST", path, body=body,
                     headers={**target.headers, "Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{target.name} stream: HTTP {response.status}")
        response.read1(1) if hasattr(response, "read1") else response.read(1)
        firsts.append(time.perf_counter() - started)
        response.read()
        totals.append(time.perf_counter() - started)
        conn.close()
    return statistics.median(firsts) * 1000, statistics.median(totals) * 1000


# --- floors: what the parts of a gateway cost on their own -----------------------------------


def httpx_rps(stub_port: int, body: bytes, ctype: str, n: int) -> float:
    """The transcription request sent to the stub by httpx alone, configured as ARouter's
    upstream client is (its HTTP/1.1 transport, uvloop), at 16 concurrent requests:
    the most any gateway built on that client can do, before any gateway work."""
    import httpx
    import uvloop

    sys.path.insert(0, str(BASE_DIR))
    from gateway.providers.http11 import transport_for

    base_url = f"http://127.0.0.1:{stub_port}/v1"
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)

    async def run() -> float:
        transport = transport_for(base_url, http2=False, limits=limits)
        async with httpx.AsyncClient(base_url=base_url, transport=transport) as client:
            left = n

            async def one_client() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    response = await client.post(
                        "/audio/transcriptions", content=body, headers={"content-type": ctype}
                    )
                    response.json()

            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(16)))
            return n / (time.perf_counter() - started)

    return uvloop.run(run())


def floors(stub_port: int, arouter: Target, audio: bytes, args, work: Path) -> None:
    _, body, ctype = requests_for(arouter, audio)["transcription"]
    client = httpx_rps(stub_port, body, ctype, args.requests)
    framework = ab_rps(arouter, f"/v1/models/{arouter.stt_model}", None, "", args.requests, work)
    print("\nfloors (16 clients)")
    print(f"  httpx alone, transcription to the stub      {client:8.0f} req/s")
    print(f"  ARouter GET /v1/models/<id> (key auth only)  {framework:8.0f} req/s")
    ceiling = 1 / (1 / client + 1 / framework)
    print(f"  both in one process, at most                {ceiling:8.0f} req/s")


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="ab requests per figure")
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--only", nargs="*", default=["arouter", "litellm", "portkey"])
    parser.add_argument("--arouter-workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument(
        "--arouter-database-url", default="", help="e.g. postgres://…; default: SQLite"
    )
    args = parser.parse_args()
    ARGS.arouter_database_url = args.arouter_database_url
    ARGS.arouter_workers = args.arouter_workers
    if not shutil.which("ab"):
        sys.exit("ab not found: apt-get install apache2-utils")

    work = Path(tempfile.mkdtemp(prefix="arouter-bench-"))
    stub: list[subprocess.Popen] = []
    try:
        stub_port = free_port()
        stub.append(subprocess.Popen([sys.executable, __file__, "--stub", str(stub_port)]))
        wait_for_port(stub_port, stub[0])
        audio = wav_277kb()
        print(f"transcription upload: {len(multipart('whisper-1', audio)) / 1024:.0f} KB "
              f"multipart; speech: JSON -> {SPEECH_BYTES} B mp3; 16 clients for req/s")  # fmt: skip
        direct = Target("direct", stub_port, "/v1", {"Authorization": "Bearer sk-stub"},
                        "whisper-1", "tts-1", "tts-stream")  # fmt: skip
        results = {"transcription": {}, "speech": {}, "stream": {}}
        measure(direct, audio, args, work, results)
        starters = {"arouter": start_arouter, "litellm": start_litellm, "portkey": start_portkey}
        for name in args.only:
            # One gateway at a time beside the stub: an idle peer's background work (LiteLLM
            # has some) would otherwise take CPU from the one being measured.
            procs: list[subprocess.Popen] = []
            try:
                target = starters[name](stub_port, work, procs)
                if target is not None:
                    measure(target, audio, args, work, results)
                    if name == "arouter":
                        floors(stub_port, target, audio, args, work)
            finally:
                stop(procs)
        report(results)
    finally:
        stop(stub)
        shutil.rmtree(work, ignore_errors=True)


def measure(target: Target, audio: bytes, args, work: Path, results: dict) -> None:
    for kind in ("transcription", "speech"):
        path, body, ctype = requests_for(target, audio)[kind]
        try:
            latency = median_latency(target, path, body, ctype, args.latency_samples)
            rps = ab_rps(target, path, body, ctype, args.requests, work)
            results[kind][target.name] = {"rps": rps, "latency": latency}
        except Exception as exc:  # a peer that cannot serve this request
            results[kind][target.name] = {"error": str(exc)[:120]}
    try:
        first, total = first_byte(target)
        results["stream"][target.name] = {"first": first, "total": total}
    except Exception as exc:
        results["stream"][target.name] = {"error": str(exc)[:100]}


def report(results: dict) -> None:
    for kind in ("transcription", "speech"):
        rows = results[kind]
        print(f"\n{kind}")
        base = rows["direct"]["latency"]
        print(f"  {'target':10} {'req/s @16':>10} {'median ms @1':>13} {'added ms':>9}")
        for name, row in rows.items():
            if "error" in row:
                print(f"  {name:10} failed: {row['error']}")
                continue
            added = row["latency"] - base
            print(f"  {name:10} {row['rps']:10.0f} {row['latency']:13.2f} {added:9.2f}")
        peers = [r["rps"] for n, r in rows.items() if n in ("litellm", "portkey") and "rps" in r]
        if "arouter" in rows and "rps" in rows["arouter"] and peers:
            print(f"  ARouter / best peer req/s: {rows['arouter']['rps'] / max(peers):.2f}x")

    print(f"\nstreamed speech ({STREAM_CHUNKS} chunks, {STREAM_GAP * 1000:.0f} ms apart)")
    print(f"  {'target':10} {'first byte ms':>14} {'last byte ms':>13}")
    for name, row in results["stream"].items():
        if "error" in row:
            print(f"  {name:10} failed: {row['error']}")
        else:
            print(f"  {name:10} {row['first']:14.1f} {row['total']:13.1f}")


def stop(procs: list[subprocess.Popen]) -> None:
    for process in procs:
        process.terminate()
    for process in procs:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--stub":
        run_stub(int(sys.argv[2]))
    elif sys.argv[1:2] == ["vendors"]:
        import vendor_overhead

        vendor_overhead.main(sys.argv[2:])
    else:
        main()
