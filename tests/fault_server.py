"""A fault-injecting OpenAI-compatible server on loopback, for the upstream tests.

A real HTTP/1.1 server (asyncio streams, keep-alive, chunked bodies) in a background
thread. The first path element picks the behaviour, so one server stands in for many
upstreams: `http://127.0.0.1:PORT/<scenario>/v1/...`.

Scenarios:
  ok              well-formed answers for chat (JSON and SSE), speech, transcriptions, models
  slow            sleeps `slow_seconds` before the status line (timeouts)
  limited-once    429 with `retry-after: 1` on the first request, then as `ok`
  limited         429 with `retry-after: 1` always
  fail-once       500 on the first request, then as `ok`
  fail            500 always
  reset           headers and one piece of body, then the connection is reset
  truncated       an SSE stream (or audio) that ends cleanly but early, without `[DONE]`
  html            200 with an HTML page where JSON, audio or SSE belongs
  refuse          400 with an OpenAI error envelope whose message names the upstream's
                  address and echoes the key it was sent (the gateway must scrub them)
  crlf            as `ok`, but SSE events end in CRLF line breaks (many servers' default),
                  with an `event:` line and a comment between them
  cookie          a chat answer that sets a cookie naming the key it was sent

Every request is recorded (`requests`), with the multipart file's size and name.
"""

import asyncio
import io
import json
import math
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import av

SPEECH_CHUNKS = 10


@dataclass
class Seen:
    scenario: str
    path: str
    headers: dict[str, str]
    json: dict | None = None
    form: dict[str, list[str]] = field(default_factory=dict)
    file_name: str = ""
    file_size: int = 0


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, list[str]], str, bytes]:
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    form: dict[str, list[str]] = {}
    file_name, file_bytes = "", b""
    for part in body.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, _, content = part.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        disposition = next(
            (line for line in head.decode().split("\r\n") if "content-disposition" in line.lower()),
            "",
        )
        name = disposition.split('name="', 1)[1].split('"', 1)[0] if 'name="' in disposition else ""
        if 'filename="' in disposition:
            file_name = disposition.split('filename="', 1)[1].split('"', 1)[0]
            file_bytes = content
        else:
            form.setdefault(name, []).append(content.decode())
    return form, file_name, file_bytes


def audio_seconds(content: bytes) -> float:
    samples = 0
    rate = 16000
    with av.open(io.BytesIO(content)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate


def _event(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def _crlf_event(data: str) -> bytes:
    return f": keep-alive\r\nevent: message\r\ndata: {data}\r\n\r\n".encode()


class FaultServer:
    def __init__(self, slow_seconds: float = 3.0, api_key: str = "sk-upstream-secret-1234") -> None:
        self.slow_seconds = slow_seconds
        self.api_key = api_key
        self.requests: list[Seen] = []
        self.counts: dict[str, int] = {}
        self.max_file_bytes = 0  # when set, larger uploads get OpenAI's 413
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> "FaultServer":
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        future.result(timeout=10)
        return self

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}/{scenario}/v1"

    def reset(self) -> None:
        self.requests.clear()
        self.counts.clear()

    def seen(self, scenario: str) -> list[Seen]:
        return [r for r in self.requests if r.scenario == scenario]

    # --- HTTP ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self._handle(method, target, headers, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # client gone, or the server stopping
        finally:
            if not writer.is_closing():
                writer.close()

    async def _send(self, writer, status: int, body: bytes, content_type: str, extra=None):
        reason = {200: "OK", 400: "Bad Request", 413: "Payload Too Large", 429: "Too Many Requests",
                  500: "Internal Server Error", 404: "Not Found"}.get(status, "OK")  # fmt: skip
        head = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}",
                f"content-length: {len(body)}"]  # fmt: skip
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()

    async def _send_json(self, writer, status: int, payload: dict, extra=None):
        await self._send(writer, status, json.dumps(payload).encode(), "application/json", extra)

    async def _start_chunked(self, writer, content_type: str) -> None:
        writer.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
            "transfer-encoding: chunked\r\n\r\n".encode()
        )
        await writer.drain()

    async def _chunk(self, writer, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    async def _end_chunked(self, writer) -> None:
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    def _reset(self, writer) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _handle(self, method, target, headers, body, writer) -> bool:
        parts = target.split("/", 2)
        scenario, path = parts[1], "/" + (parts[2] if len(parts) > 2 else "")
        seen = Seen(scenario, path, headers)
        content_type = headers.get("content-type", "")
        if content_type.startswith("application/json") and body:
            seen.json = json.loads(body)
        elif content_type.startswith("multipart/form-data"):
            seen.form, seen.file_name, file_bytes = _multipart(content_type, body)
            seen.file_size = len(file_bytes)
        self.requests.append(seen)
        count = self.counts[scenario] = self.counts.get(scenario, 0) + 1

        if scenario == "slow":
            await asyncio.sleep(self.slow_seconds)
        if scenario == "limited" or (scenario == "limited-once" and count == 1):
            await self._send_json(writer, 429, _error("Rate limit reached.", "rate_limit_exceeded"),
                                  {"retry-after": "1"})  # fmt: skip
            return True
        if scenario == "fail" or (scenario == "fail-once" and count == 1):
            await self._send_json(writer, 500, _error("boom", "server_error"))
            return True
        if scenario == "refuse":
            message = (
                f"Invalid value for 'temperature' (sent to http://127.0.0.1:{self.port}/refuse/v1 "
                f"with {headers.get('authorization', 'no key')})."
            )
            await self._send_json(writer, 400, _error(message, None, "temperature"))
            return True
        if scenario == "cookie":
            cookie = f"session={headers.get('authorization', '').replace(' ', '_')}; Path=/"
            completion = _completion(seen.json or {}, "Hello.")
            await self._send_json(writer, 200, completion, {"set-cookie": cookie})
            return True
        if scenario == "html":
            await self._send(writer, 200, b"<html><body>Welcome</body></html>", "text/html")
            return True
        if self.max_file_bytes and seen.file_size > self.max_file_bytes:
            await self._send_json(writer, 413, _error("Maximum content size limit exceeded.", None))
            return True

        if path.startswith("/v1/chat/completions"):
            return await self._chat(scenario, seen.json or {}, writer)
        if path.startswith("/v1/audio/speech"):
            return await self._speech(scenario, writer)
        if path.startswith(("/v1/audio/transcriptions", "/v1/audio/translations")):
            seconds = audio_seconds(file_bytes)
            return await self._transcription(seen, seconds, writer)
        await self._send_json(writer, 404, _error("Unknown URL", None))
        return True

    async def _chat(self, scenario: str, request: dict, writer) -> bool:
        words = ["Hello", " from", " the", " fault", " server", "."]
        if not request.get("stream"):
            await self._send_json(writer, 200, _completion(request, "".join(words)))
            return True
        await self._start_chunked(writer, "text/event-stream")
        frame = _crlf_event if scenario == "crlf" else _event
        for i, word in enumerate(words):
            if scenario in ("reset", "truncated") and i == 2:
                if scenario == "reset":
                    self._reset(writer)
                    return False
                await self._end_chunked(writer)
                return True
            choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
            event = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "choices": [choice]}
            await self._chunk(writer, frame(json.dumps(event)))
        final = {"id": "chatcmpl-fault", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}  # fmt: skip
        counts = {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
        usage = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "choices": [],
                 "usage": counts}  # fmt: skip
        for event in (final, usage):
            await self._chunk(writer, frame(json.dumps(event)))
        await self._chunk(writer, frame("[DONE]"))
        await self._end_chunked(writer)
        return True

    async def _speech(self, scenario: str, writer) -> bool:
        await self._start_chunked(writer, "audio/pcm")
        for i in range(SPEECH_CHUNKS):
            if scenario == "reset" and i == 2:
                self._reset(writer)
                return False
            await self._chunk(writer, bytes([i]) * 4800)  # 0.1 s of 24 kHz 16-bit PCM
            await asyncio.sleep(0.01)
        await self._end_chunked(writer)
        return True

    async def _transcription(self, seen: Seen, seconds: float, writer) -> bool:
        # One segment per started second, one word per segment: easy to check offsets.
        segments, words = [], []
        for i in range(max(math.ceil(seconds - 0.05), 1)):
            end = min(i + 1.0, seconds)
            segments.append({"id": i, "seek": 0, "start": float(i), "end": end,
                             "text": f" w{i}", "tokens": [1, 2], "temperature": 0.0,
                             "avg_logprob": -0.1, "compression_ratio": 1.0,
                             "no_speech_prob": 0.01})  # fmt: skip
            words.append({"word": f"w{i}", "start": float(i) + 0.1, "end": end - 0.1})
        text = "".join(s["text"] for s in segments).strip()
        fmt = (seen.form.get("response_format") or ["json"])[0]
        if fmt == "verbose_json":
            payload = {"task": "transcribe", "language": "english", "duration": seconds,
                       "text": text, "segments": segments}  # fmt: skip
            if "word" in seen.form.get("timestamp_granularities[]", []):
                payload["words"] = words
        else:
            payload = {"text": text}  # no usage: the gateway must measure the duration
        await self._send_json(writer, 200, payload)
        return True


def _completion(request: dict, content: str) -> dict:
    return {
        "id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()),
        "model": request.get("model"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17},
    }  # fmt: skip


def _error(message: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}  # fmt: skip
