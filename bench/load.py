"""Load without loss: mixed requests from many clients against a two-worker ARouter.

The server runs with two uvicorn workers on PostgreSQL + Redis (or SQLite without
DATABASE_URL) in a fresh database. The mix is cheap local work, so the gateway itself is
under load: model listings, short speech (SSE, which reports its cost), a one-second
transcription, and a short text chat. Afterwards the ledger is read straight from the
database and checked against the responses:

- no 5xx;
- exactly one usage record per billed request (matched by `x-request-id`);
- the ledger's total equals the sum of the responses' `usage.cost`.

    .venv/bin/python bench/load.py [--requests 500] [--clients 32] [--workers 2]
        [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--redis-url redis://…]

A smaller run is part of the test suite (tests/test_load.py).
"""

import argparse
import asyncio
import io
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import wave
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_arouter import start_arouter

ONE_SECOND_WAV_RATE = 16_000


@dataclass
class Report:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    billed: dict[str, Decimal] = field(default_factory=dict)  # request id -> response cost
    ledger_rows: dict[str, int] = field(default_factory=dict)  # request id -> rows
    ledger_total: Decimal = Decimal(0)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def lost_or_doubled(self) -> int:
        ids = set(self.billed) | set(self.ledger_rows)
        return sum(1 for i in ids if self.ledger_rows.get(i, 0) != (1 if i in self.billed else 0))

    @property
    def response_total(self) -> Decimal:
        return sum(self.billed.values(), Decimal(0))


def tone_wav() -> bytes:
    """One second of a quiet tone: decodes, transcribes (to little), costs a second."""
    import numpy as np

    t = np.arange(ONE_SECOND_WAV_RATE) / ONE_SECOND_WAV_RATE
    pcm = (np.sin(2 * np.pi * 220 * t) * 3000).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(ONE_SECOND_WAV_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


async def one_request(client: httpx.AsyncClient, kind: str, wav: bytes, report: Report) -> None:
    started = time.perf_counter()
    cost: Decimal | None = None
    if kind == "models":
        response = await client.get("/v1/models")
    elif kind == "speech":
        body = {"model": "local/piper", "voice": "alloy", "input": "Load test.",
                "stream_format": "sse"}  # fmt: skip
        response = await client.post("/v1/audio/speech", json=body)
        for line in response.text.splitlines():
            if '"speech.audio.done"' in line:
                cost = Decimal(str(json.loads(line[5:])["usage"]["cost"]))
    elif kind == "transcription":
        files = {"file": ("tone.wav", wav, "audio/wav")}
        response = await client.post(
            "/v1/audio/transcriptions", data={"model": "local/whisper-tiny.en"}, files=files
        )
        if response.status_code == 200:
            cost = Decimal(str(response.json()["usage"]["cost"]))
    else:
        body = {"model": "local/gemma-3-270m", "max_tokens": 4,
                "messages": [{"role": "user", "content": "Say hi."}]}  # fmt: skip
        response = await client.post("/v1/chat/completions", json=body)
        if response.status_code == 200:
            cost = Decimal(str(response.json()["usage"]["cost"]))
    report.latencies.append(time.perf_counter() - started)
    report.statuses[response.status_code] += 1
    if kind != "models":
        report.billed[response.headers["x-request-id"]] = cost or Decimal(0)


async def drive(base_url: str, key: str, requests: int, clients: int) -> Report:
    report = Report(requests=requests)
    wav = tone_wav()
    kinds = ["models", "speech", "transcription", "chat"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(kinds[n % len(kinds)])
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=300, limits=limits
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                await one_request(client, queue.get_nowait(), wav, report)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        report.seconds = time.perf_counter() - started
    return report


def read_ledger(report: Report, database_url: str, data_dir: Path) -> None:
    query = "SELECT request_id, count(*), sum(cost) FROM usage_usagerecord GROUP BY request_id"
    if database_url:
        import psycopg

        with psycopg.connect(database_url) as conn:
            rows = conn.execute(query).fetchall()
    else:
        with sqlite3.connect(data_dir / "arouter.sqlite3") as conn:
            rows = conn.execute(query).fetchall()
    report.ledger_rows = {request_id: count for request_id, count, _ in rows}
    report.ledger_total = sum((Decimal(str(total)) for _, _, total in rows), Decimal(0))


def fresh_database(admin_url: str) -> tuple[str, str]:
    """A new empty PostgreSQL database beside the one admin_url names; (url, name)."""
    import psycopg

    name = f"arouter_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(
    requests: int, clients: int, workers: int, database_url: str = "", redis_url: str = ""
) -> Report:
    """Serve, drive, stop, read the ledger; the database is made for the run and dropped."""
    data_dir = Path(tempfile.mkdtemp(prefix="arouter-load-"))
    url, name = fresh_database(database_url) if database_url else ("", "")
    env = {"DATABASE_URL": url, "REDIS_URL": redis_url} if url else {}
    if not redis_url:
        env.pop("REDIS_URL", None)
    process, port, key = start_arouter(data_dir, env, workers=workers)
    try:
        report = asyncio.run(drive(f"http://127.0.0.1:{port}", key, requests, clients))
    finally:
        process.terminate()
        process.wait(timeout=30)
    try:
        read_ledger(report, url, data_dir)
    finally:
        if name:
            drop_database(database_url, name)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="an existing PostgreSQL database to create the run's database from ('' = SQLite)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    report = run(args.requests, args.clients, args.workers, args.database_url, args.redis_url)
    latencies = sorted(report.latencies)
    print(f"{report.requests} requests, {args.clients} clients, {args.workers} workers, "
          f"{'PostgreSQL + Redis' if args.database_url else 'SQLite'}")  # fmt: skip
    print(f"  throughput        {report.requests / report.seconds:8.1f} req/s")
    print(f"  latency p50       {statistics.median(latencies) * 1000:8.0f} ms")
    print(f"  latency p95       {latencies[int(len(latencies) * 0.95)] * 1000:8.0f} ms")
    print(f"  statuses          {dict(sorted(report.statuses.items()))}")
    print(f"  5xx               {report.server_errors:8d}")
    print(f"  billed responses  {len(report.billed):8d}")
    print(f"  ledger rows       {sum(report.ledger_rows.values()):8d}")
    print(f"  lost or doubled   {report.lost_or_doubled:8d}")
    print(f"  ledger total      {report.ledger_total:.8f} USD")
    print(f"  responses' total  {report.response_total:.8f} USD")
    ok = (
        report.server_errors == 0
        and report.lost_or_doubled == 0
        and report.ledger_total == report.response_total
    )
    print("  OK" if ok else "  FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
