"""Audio chat latency: a spoken ~5 s question through the gateway, over SSE and WebSocket.

Prints, in one run on this machine:
- time to first audio delta vs total time, for /v1/chat/completions (SSE, pcm16) and for
  /v1/realtime (WebSocket), with when the text model finished (its last transcript delta);
- the cascade's overhead: gateway total / (bare STT + bare LLM + bare TTS) on the same
  input and the same seeded reply (goal <= 1.1). "Bare" means each stage's provider called
  directly in this process, one after the other, with nothing overlapped.

The gemma model is a tiny base model: replies are not meaningful; only timings matter.

Usage: .venv/bin/python bench/chat_audio.py   (uses a throwaway database and data dir)
"""

import asyncio
import base64
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(tempfile.mkdtemp(prefix="arouter-bench-"))
os.environ.setdefault("AROUTER_DATA_DIR", str(DATA))
os.environ.setdefault("AROUTER_CACHE_DIR", str(ROOT / "data" / "models"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arouter.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import uvicorn  # noqa: E402
import websockets  # noqa: E402
from django.core.management import call_command  # noqa: E402

from gateway.audio.encode import wav_file  # noqa: E402

QUESTION = (
    "Could you tell me a little about the history of Paris, and why so many people "
    "visit the city every single year?"
)
MODEL = "local/audio-chat"
MAX_TOKENS = 80
RUNS = 3  # the machine is shared: report the median of a few runs
SEED = 7


def start_server() -> tuple[str, uvicorn.Server]:
    import socket

    from arouter.asgi import application

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"127.0.0.1:{port}", server


def make_key() -> str:
    from accounts.models import ApiKey, Team

    team = Team.objects.create(name="bench")
    return ApiKey.issue(team, name="bench").raw


async def over_sse(host: str, key: str, question_wav: bytes) -> dict:
    body = {
        "model": MODEL,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "pcm16"},
        "stream": True,
        "max_completion_tokens": MAX_TOKENS,
        "seed": SEED,
        "temperature": 0,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {
                            "data": base64.b64encode(question_wav).decode(),
                            "format": "wav",
                        },
                    }
                ],
            }
        ],
    }
    first_audio = last_text = None
    audio_bytes = 0
    transcript = ""
    start = time.perf_counter()
    async with (
        httpx.AsyncClient(timeout=300) as client,
        client.stream(
            "POST",
            f"http://{host}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response,
    ):
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if not chunk["choices"]:
                continue
            audio = chunk["choices"][0]["delta"].get("audio") or {}
            if audio.get("data"):
                audio_bytes += len(base64.b64decode(audio["data"]))
                first_audio = first_audio or time.perf_counter() - start
            if audio.get("transcript"):
                transcript += audio["transcript"]
                last_text = time.perf_counter() - start
    total = time.perf_counter() - start
    return {
        "first_audio": first_audio,
        "text_done": last_text,
        "total": total,
        "audio_seconds": audio_bytes / 2 / 24_000,
        "transcript": transcript,
    }


async def over_websocket(host: str, key: str, question_pcm) -> dict:
    url = f"ws://{host}/v1/realtime?model={MODEL}"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        session = {"max_output_tokens": MAX_TOKENS, "temperature": 0}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        assert json.loads(await ws.recv())["type"] == "session.updated"
        step = 2400  # 100 ms frames, as a microphone would send them
        start = time.perf_counter()  # the user has finished speaking; frames go out now
        for i in range(0, len(question_pcm), step):
            frame = question_pcm[i : i + step].astype("<i2").tobytes()
            await ws.send(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()}
                )
            )
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send(json.dumps({"type": "response.create"}))
        first_audio = last_text = None
        while True:
            event = json.loads(await ws.recv())
            now = time.perf_counter() - start
            if event["type"] == "response.output_audio.delta":
                first_audio = first_audio or now
            elif event["type"] == "response.output_audio_transcript.delta":
                last_text = now
            elif event["type"] == "response.done":
                return {"first_audio": first_audio, "text_done": last_text, "total": now}
            elif event["type"] == "error":
                raise RuntimeError(event)


async def bare_stages(question_wav: bytes) -> dict:
    from gateway.catalog import catalog
    from gateway.providers import provider_for
    from gateway.providers.base import AudioUpload, ChatJob, TextMessage, TranscriptionJob

    cascade = provider_for(catalog().get(MODEL))
    whisper, llama, piper = cascade.transcriber(), cascade.text_model(), cascade.synthesizer()
    start = time.perf_counter()
    heard = await whisper.transcribe(
        TranscriptionJob(upload=AudioUpload(content=question_wav, filename="q.wav"))
    )
    stt = time.perf_counter() - start
    start = time.perf_counter()
    reply = await llama.complete(
        ChatJob(
            messages=[TextMessage("user", heard.text.strip())],
            max_tokens=MAX_TOKENS,
            temperature=0,
            seed=SEED,
        )
    )
    llm = time.perf_counter() - start
    start = time.perf_counter()
    await asyncio.to_thread(piper.synthesize_pcm, reply.text, "alloy")
    tts = time.perf_counter() - start
    return {"stt": stt, "llm": llm, "tts": tts, "sum": stt + llm + tts, "reply": reply.text}


def main() -> None:
    call_command("migrate", verbosity=0)
    key = make_key()
    host, server = start_server()
    from gateway.catalog import catalog
    from gateway.providers import provider_for

    piper = provider_for(catalog().get("local/piper"))
    question_pcm = piper.synthesize_pcm(QUESTION, "alloy")
    question_wav = wav_file(question_pcm)
    print(f"question: {len(question_pcm) / 24_000:.2f} s of speech, max {MAX_TOKENS} tokens")

    asyncio.run(over_sse(host, key, question_wav))  # warm-up: loads all three models
    asyncio.run(bare_stages(question_wav))

    def median_run(runs: list[dict]) -> dict:
        return sorted(runs, key=lambda run: run["total"])[len(runs) // 2]

    sse = median_run([asyncio.run(over_sse(host, key, question_wav)) for _ in range(RUNS)])
    ws = median_run([asyncio.run(over_websocket(host, key, question_pcm)) for _ in range(RUNS)])
    bares = [asyncio.run(bare_stages(question_wav)) for _ in range(RUNS)]
    bare = sorted(bares, key=lambda run: run["sum"])[RUNS // 2]
    print(f"medians of {RUNS} runs each")

    print(f"reply ({sse['audio_seconds']:.1f} s of audio): {sse['transcript'][:100]!r}")
    for name, run in (("SSE      ", sse), ("WebSocket", ws)):
        print(
            f"{name} first audio {run['first_audio']:.2f} s | text model done "
            f"{run['text_done']:.2f} s | total {run['total']:.2f} s | first/total "
            f"{run['first_audio'] / run['total']:.2f} | audio before text done: "
            f"{run['first_audio'] < run['text_done']}"
        )
    print(
        f"bare stages: STT {bare['stt']:.2f} s + LLM {bare['llm']:.2f} s + TTS {bare['tts']:.2f} s"
        f" = {bare['sum']:.2f} s"
    )
    print(
        f"cascade overhead: SSE total / bare sum = {sse['total'] / bare['sum']:.3f} (goal <= 1.1)"
    )
    print(f"                  WS total / bare sum  = {ws['total'] / bare['sum']:.3f}")
    if bare["reply"] != sse["transcript"]:
        print("note: the bare reply text differs from the gateway's (sampling); compare loosely")
    server.should_exit = True


if __name__ == "__main__":
    main()
