"""Uploads to an upstream: the gateway's form encoder vs httpx's own multipart encoder.

A transcription sent upstream is a multipart/form-data POST of the audio plus a few form
fields. The gateway's encoder (gateway.providers.form_upload) sends an upload held in
memory as one body, and a spilled one as its fields, its file in 1 MB reads and the closing
boundary; httpx's encoder (`data=`/`files=`) yields every part's header, value and separator
as a piece of its own, and the file in 64 KB reads. Each piece is a socket write. For a
277 KB upload (8.6 s of 16 kHz WAV) and a 25 MB one (OpenAI's upload limit), held in memory
and spooled to a temporary file, this prints the median time to build the body and to POST
it through an `httpx.AsyncClient` (on the gateway's own upstream transport) to a sink on
loopback, the pieces it is sent in, and the peak Python memory a 25 MB spooled upload takes
each way.

    .venv/bin/python bench/upload_encoding.py [--rounds 30]
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.providers.base import AudioUpload
from gateway.providers.form_upload import FormUpload
from gateway.providers.http11 import transport_for

FIELDS = {
    "model": "whisper-1",
    "response_format": "verbose_json",
    "temperature": "0.0",
    "timestamp_granularities[]": ["segment", "word"],
}
SIZES = {"277 KB": 277 * 1024, "25 MB": 25 * 1024 * 1024}


@contextlib.contextmanager
def ours(upload: AudioUpload) -> Iterator[dict[str, Any]]:
    """The request arguments of the gateway's own encoder (gateway.providers.form_upload)."""
    yield FormUpload(FIELDS, upload).request_kwargs()


@contextlib.contextmanager
def httpx_own(upload: AudioUpload) -> Iterator[dict[str, Any]]:
    """The request arguments that leave the body to httpx's encoder."""
    with upload.opened() as source:
        yield {"data": FIELDS, "files": {"file": ("clip.wav", source, "audio/wav")}}


async def drain(request: httpx.Request) -> tuple[int, int]:
    """(bytes, pieces) of a request's body: each piece is one socket write."""
    sizes = [len(chunk) async for chunk in request.stream]
    return sum(sizes), len(sizes)


async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads each request whole (Content-Length), answers a small JSON."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b'content-length: 11\r\n\r\n{"text":""}'
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.2f} ms"


Builder = Callable[[AudioUpload], contextlib.AbstractContextManager[dict[str, Any]]]
BUILDERS: dict[str, Builder] = {"ours": ours, "httpx": httpx_own}
PATH = "/v1/audio/transcriptions"


async def one_case(
    client: httpx.AsyncClient, build: Builder, upload: AudioUpload, rounds: int
) -> tuple[list[float], list[float], int]:
    """Seconds to build (and read out) the body, and to POST it, for each round; and the
    number of pieces the body is sent in."""
    built, posted = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        with build(upload) as kwargs:
            total, pieces = await drain(client.build_request("POST", PATH, **kwargs))
        built.append(time.perf_counter() - start)
        start = time.perf_counter()
        with build(upload) as kwargs:
            response = await client.send(client.build_request("POST", PATH, **kwargs))
        posted.append(time.perf_counter() - start)
        assert response.status_code == 200
        assert total > upload.size
    return built, posted, pieces


def spool(folder: Path, size: int, where: str) -> AudioUpload:
    """`size` random bytes, in memory or in a file as Django spools a large upload."""
    content = os.urandom(size)
    if where == "memory":
        return AudioUpload(content, "clip.wav", "audio/wav")
    path = folder / f"{size}.wav"
    path.write_bytes(content)
    return AudioUpload(b"", "clip.wav", "audio/wav", path=str(path))


async def peak_memory_mb(build: Builder, spooled: AudioUpload) -> float:
    tracemalloc.start()
    with build(spooled) as kwargs:
        await drain(httpx.Request("POST", "http://sink" + PATH, **kwargs))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


async def measure(rounds: int) -> None:
    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    # The transport the gateway's upstream client uses for a plain-HTTP upstream.
    transport = transport_for(base_url, http2=False, limits=httpx.Limits())
    client = httpx.AsyncClient(base_url=base_url, transport=transport)
    print(f"median of {rounds} rounds; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"httpx {httpx.__version__}")  # fmt: skip
    print(f"{'upload':16} {'encoder':8} {'build body':>12} {'POST to loopback':>18} {'pieces':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in SIZES.items():
            for where in ("memory", "file"):
                upload = spool(Path(tmp), size, where)
                for name, build in BUILDERS.items():
                    built, posted, pieces = await one_case(client, build, upload, rounds)
                    print(f"{label + ' ' + where:16} {name:8} {median_ms(built):>12} "
                          f"{median_ms(posted):>18} {pieces:>7}")  # fmt: skip
        for name, build in BUILDERS.items():
            print(f"peak memory, 25 MB spooled upload, {name}: "
                  f"{await peak_memory_mb(build, upload):.1f} MB")  # fmt: skip
    await client.aclose()
    await asyncio.sleep(0.1)  # the sink sees the connection close and ends
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    asyncio.run(measure(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
