"""Uploads to an upstream: httpx's own multipart encoder vs a hand-written one-join encoder.

A transcription sent upstream is a multipart/form-data POST of the audio plus a few form
fields. The hand-written encoder joins the whole body into one bytes object (the file read
into memory first); httpx's encoder (`data=`/`files=`) yields the parts in 64 KB reads and
can stream a file object straight from disk. For a 277 KB upload (8.6 s of 16 kHz WAV)
and a 25 MB one (OpenAI's upload limit), held in memory and spooled to a temporary file,
this prints the median time to build the body and to POST it through an
`httpx.AsyncClient` (on the gateway's own upstream transport) to a sink on loopback, and
the peak Python memory a 25 MB spooled upload takes each way.

    .venv/bin/python bench/upload_encoding.py [--rounds 30]
"""

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.providers.asyncio_network import transport_for

FIELDS = {
    "model": "whisper-1",
    "response_format": "verbose_json",
    "temperature": "0.0",
    "timestamp_granularities[]": ["segment", "word"],
}
SIZES = {"277 KB": 277 * 1024, "25 MB": 25 * 1024 * 1024}


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def one_join(fields: dict, filename: str, read: Callable[[], bytes]) -> tuple[bytes, str]:
    """The hand-written encoder as it stood: every part, the file read whole, one join."""
    boundary = secrets.token_hex(16)
    delimiter = f"--{boundary}\r\n".encode()
    parts: list[bytes] = []
    for name, value in fields.items():
        for item in [value] if isinstance(value, str) else value:
            parts += [
                delimiter,
                f'Content-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode(),
                item.encode(),
                b"\r\n",
            ]
    head = (
        f'Content-Disposition: form-data; name="file"; filename="{_quoted(filename)}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    )
    parts += [delimiter, head.encode(), read(), f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def hand_written(upload: bytes | BinaryIO) -> dict[str, Any]:
    """The request arguments with the body joined by hand."""
    read = upload.read if not isinstance(upload, bytes) else (lambda: upload)
    body, content_type = one_join(FIELDS, "clip.wav", read)
    return {"content": body, "headers": {"content-type": content_type}}


def httpx_own(upload: bytes | BinaryIO) -> dict[str, Any]:
    """The request arguments that leave the body to httpx's encoder."""
    return {"data": FIELDS, "files": {"file": ("clip.wav", upload, "audio/wav")}}


def drain(request: httpx.Request) -> int:
    return sum(len(chunk) for chunk in request.stream)


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


Builder = Callable[[bytes | BinaryIO], dict[str, Any]]
BUILDERS: dict[str, Builder] = {"hand-written": hand_written, "httpx": httpx_own}
PATH = "/v1/audio/transcriptions"


async def one_case(
    client: httpx.AsyncClient, build: Builder, upload: tuple[Path, bytes], where: str, rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds to build (and read out) the body, and to POST it, for each round."""
    spooled, content = upload
    built, posted = [], []
    for _ in range(rounds):
        with spooled.open("rb") as file:
            body = content if where == "memory" else file
            start = time.perf_counter()
            total = drain(client.build_request("POST", PATH, **build(body)))
            built.append(time.perf_counter() - start)
            file.seek(0)
            start = time.perf_counter()
            response = await client.send(client.build_request("POST", PATH, **build(body)))
            posted.append(time.perf_counter() - start)
        assert response.status_code == 200
        assert total > len(content)
    return built, posted


def spool(folder: Path, size: int) -> tuple[Path, bytes]:
    """`size` random bytes, in memory and in a file as Django spools a large upload."""
    content = os.urandom(size)
    path = folder / f"{size}.wav"
    path.write_bytes(content)
    return path, content


def peak_memory_mb(build: Builder, spooled: Path) -> float:
    with spooled.open("rb") as file:
        tracemalloc.start()
        drain(httpx.Request("POST", "http://sink" + PATH, **build(file)))
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
    print(f"{'upload':16} {'encoder':13} {'build body':>12} {'POST to loopback':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in SIZES.items():
            upload = spool(Path(tmp), size)
            for where in ("memory", "file"):
                for name, build in BUILDERS.items():
                    built, posted = await one_case(client, build, upload, where, rounds)
                    print(f"{label + ' ' + where:16} {name:13} {median_ms(built):>12} "
                          f"{median_ms(posted):>18}")  # fmt: skip
        for name, build in BUILDERS.items():
            print(f"peak memory, 25 MB spooled upload, {name}: "
                  f"{peak_memory_mb(build, upload[0]):.1f} MB")  # fmt: skip
    await client.aclose()
    await asyncio.sleep(0.1)  # the sink sees the connection close and ends
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    asyncio.run(measure(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
