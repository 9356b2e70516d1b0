"""Relaying a realtime session to an upstream's own `/v1/realtime` (OpenAI, another ARouter).

A catalog chat entry served by `provider = "upstream"` that hears and speaks and sets
`options.realtime = true` is not run here: the client's socket is joined to one socket on
the upstream (`base_url` http(s)://host/v1 -> ws(s)://host/v1/realtime?model=<target>),
and every frame crosses as it arrives, both ways, unchanged except for:

- model names: the upstream is asked for the entry's `target`; `session.model` in a
  client's `session.update` becomes the target, and in the upstream's `session.created` /
  `session.updated` the id the client asked for (a client may not switch models: another
  name is refused, since this entry's prices bill the session);
- a client `response.create` without an `event_id` gets one, so that an upstream refusing
  it (an `error` naming that event) frees its admission; the `error` loses it again;
- `response.done`'s `usage.cost` says what ARouter's ledger charged (an ARouter upstream
  puts its own price there);
- error events are scrubbed of the upstream's address and keys.

A client frame the upstream might read otherwise than we do (binary, not a JSON object, a
key repeated) is refused with an `error` event, not passed on: no response may start
upstream without being admitted here.

The upstream key (the catalog's, or the team's own: `credentials.ProviderCredential`) is
sent by us and never reaches the client. Each response is one `MeteredCall`: the key is
read again and the response admitted against its limits when the client sends
`response.create` (refused: an `error` event, and the upstream never sees it), or, for a
response the upstream starts itself (server VAD), when its `response.created` arrives
(refused: `response.cancel` upstream and an `error` to the client). `response.done`'s
usage is billed; a response cut short without one (the client left, the key was revoked)
is billed for what was forwarded: its audio seconds (as audio tokens, by the catalog's
rule) and its transcript (as text tokens). A failed response, or one the upstream's
socket dropped mid-way, costs nothing, as a failed HTTP stream does.
"""

import asyncio
import contextlib
import json
import logging
import math
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.db import InterfaceError, OperationalError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.http11 import Response as HandshakeResponse

from accounts.models import ApiKey
from core.api_requests import new_request_id
from core.errors import (
    UPSTREAM,
    OpenAIError,
    database_unavailable,
    invalid_param,
    server_error,
)
from gateway.catalog import ModelEntry, catalog
from gateway.lifecycle import MeteredCall
from gateway.pricing import audio_tokens, audio_tokens_per_second
from gateway.providers.upstream import CHARS_PER_TOKEN, PCM_BYTES_PER_SECOND
from gateway.providers.upstream_client import (
    bad_response,
    client_for,
    cooling_down,
    timed_out,
    unreachable,
)
from gateway.realtime import protocol
from gateway.realtime.auth import Credential, current_key
from gateway.realtime.protocol import RealtimeError
from usage.ledger import Metered

logger = logging.getLogger(__name__)

ENDPOINT = "/v1/realtime"  # the ledger's endpoint, as for the local socket's responses
UPSTREAM_FAILED = 1011  # the close code when the upstream cannot be used
# Codes that describe a close but cannot be sent in a close frame.
UNSENDABLE_CODES = {1005, 1006, 1015}
MAX_FRAME_BYTES = 16 * 1024 * 1024  # uvicorn's own limit for what our clients send
CLIENT_LEFT = 499  # a requested response the upstream had not started when the client left

AUDIO_DELTAS = {"response.output_audio.delta", "response.audio.delta"}  # GA, beta names
TEXT_DELTAS = {
    "response.output_audio_transcript.delta",
    "response.output_text.delta",
    "response.audio_transcript.delta",
    "response.text.delta",
}
# Bytes of output audio a second, by session output format (GA type, or beta name).
G711_BYTES_PER_SECOND = 8000
AUDIO_BYTES_PER_SECOND = {
    "audio/pcm": PCM_BYTES_PER_SECOND,
    "pcm16": PCM_BYTES_PER_SECOND,
    "audio/pcmu": G711_BYTES_PER_SECOND,
    "audio/pcma": G711_BYTES_PER_SECOND,
    "g711_ulaw": G711_BYTES_PER_SECOND,
    "g711_alaw": G711_BYTES_PER_SECOND,
}
# The ledger status of a finished response: a failed one is not billed.
STATUS_CODES = {"completed": 200, "incomplete": 200, "cancelled": 200, "failed": 502}


def relayed(entry: ModelEntry) -> bool:
    """Whether a realtime session on `entry` is relayed to its upstream's realtime socket."""
    return (
        entry.provider == "upstream"
        and entry.options.get("realtime") is True
        and entry.accepts("audio")
        and entry.produces("audio")
    )


def realtime_url(base_url: str, target: str) -> str:
    """The upstream's realtime socket: http(s)://host/v1 -> ws(s)://host/v1/realtime."""
    scheme, rest = base_url.split("://", 1)
    websocket_scheme = "wss" if scheme == "https" else "ws"
    return f"{websocket_scheme}://{rest}/realtime?{urlencode({'model': target})}"


class ClientSocket(Protocol):
    """What the relay needs of the client's socket (the consumer)."""

    model: str  # the id the client asked for
    api_key: ApiKey
    credential: Credential
    ended_by: OpenAIError | None  # set once the session is ending for its credentials

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None): ...

    async def send_event(self, type: str, **fields) -> None: ...

    async def close(self, code: int | None = None, reason: str | None = None): ...

    async def end_session(self, exc: OpenAIError, event_id: str | None) -> None: ...


def _json_object(text: str) -> dict | None:
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    event = dict(pairs)
    if len(event) != len(pairs):
        raise RealtimeError("An event may not repeat a key.", code="invalid_event")
    return event


def client_event(text: str | None) -> dict:
    """The client's event as the upstream will read it, or the RealtimeError saying why it
    is not passed on. Only what reads the same to every parser goes through: a binary
    frame, a frame that is not a JSON object or one repeating a key could be read by the
    upstream as a `response.create` we never admitted."""
    if text is None:
        return protocol.parse_event(None)  # refused: binary
    try:
        event = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        raise RealtimeError("The event is not valid JSON.", code="invalid_json") from None
    if not isinstance(event, dict):
        raise RealtimeError("An event must be a JSON object.", code="invalid_event")
    return event


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _base64_length(data: Any) -> int:
    """Decoded bytes of a base64 string, without decoding it."""
    if not isinstance(data, str):
        return 0
    return len(data) * 3 // 4 - data.endswith("=") - data.endswith("==")


def reported_usage(usage: Any) -> Metered | None:
    """What `response.done`'s usage says was consumed, or None if it reports nothing.

    Cached input tokens are part of the text and audio counts and billed as input (the
    catalog has no cached price)."""
    if not isinstance(usage, dict):
        return None
    inputs = usage.get("input_token_details")
    outputs = usage.get("output_token_details")
    inputs = inputs if isinstance(inputs, dict) else {}
    outputs = outputs if isinstance(outputs, dict) else {}
    audio_in, audio_out = _count(inputs.get("audio_tokens")), _count(outputs.get("audio_tokens"))
    # Without details every token is text.
    text_in = _count(inputs.get("text_tokens")) if inputs else _count(usage.get("input_tokens"))
    text_out = _count(outputs.get("text_tokens")) if outputs else _count(usage.get("output_tokens"))
    if not (audio_in or audio_out or text_in or text_out):
        return None
    return Metered(
        text_tokens_in=text_in,
        text_tokens_out=text_out,
        audio_tokens_in=audio_in,
        audio_tokens_out=audio_out,
    )


@dataclass
class RelayedResponse:
    """One admitted response, from its admission to its bill."""

    call: MeteredCall
    event_id: str | None = None  # the response.create's (None: the upstream started it)
    audio_bytes: int = 0  # output audio forwarded
    text_characters: int = 0  # transcript or text forwarded
    started: asyncio.Task | None = None  # its ledger row, written as it starts

    def audio_seconds(self, bytes_per_second: int) -> float:
        return round(self.audio_bytes / bytes_per_second, 3)


class Relay:
    """One client socket joined to one upstream realtime socket."""

    def __init__(self, entry: ModelEntry, client: ClientSocket) -> None:
        self.entry, self.client = entry, client
        self.upstream = client_for(catalog().upstreams[entry.upstream])
        self.socket: ClientConnection | None = None
        self.pump: asyncio.Task | None = None
        self.forwarding = False
        self.finished = False
        # Admitted response.create events, oldest first, whose response.created is to come.
        self.requested: deque[RelayedResponse] = deque()
        self.responses: dict[str, RelayedResponse] = {}  # by the upstream's response id
        self.tagged: set[str] = set()  # event ids we gave response.create events
        self.audio_bytes_per_second = PCM_BYTES_PER_SECOND
        self.max_output_tokens: Any = "inf"

    @classmethod
    async def open(cls, entry: ModelEntry, client: ClientSocket) -> "Relay":
        """Connect to the upstream and start passing its events on. If it cannot be
        reached or refuses us, the client gets the `error` event and the socket closes
        (the relay is returned finished: what the client still sends is dropped)."""
        relay = cls(entry, client)
        try:
            relay.socket = await relay._connect()
        except (OpenAIError, OperationalError, InterfaceError) as exc:
            if not isinstance(exc, OpenAIError):  # reading the team's own upstream key
                logger.warning("database unavailable opening a realtime relay: %s", exc)
                exc = database_unavailable()
            relay.finished = True
            await client.send_event("error", error=protocol.error_body(exc))
            await client.close(code=UPSTREAM_FAILED)
            return relay
        relay.forwarding = True
        relay.pump = asyncio.create_task(relay._pump())
        return relay

    async def _connect(self) -> ClientConnection:
        upstream = self.upstream
        if upstream.health.is_cooling():
            raise cooling_down()
        team_key = await upstream.team_keys.get(self.client.api_key.team_id)
        key = team_key or upstream.upstream.api_key()
        try:
            socket = await connect(
                realtime_url(upstream.upstream.base_url, self.entry.target),
                additional_headers=upstream.dialect.auth_headers(key) if key else None,
                user_agent_header="arouter",
                open_timeout=upstream.options.connect_timeout,
                max_size=MAX_FRAME_BYTES,
                compression=None,  # audio does not deflate; it would only cost time
            )
        except InvalidStatus as exc:
            upstream.health.succeeded()  # alive; it refused us
            raise await self._refusal(exc.response) from None
        except TimeoutError:
            upstream.health.failed()
            raise timed_out() from None
        except (OSError, WebSocketException) as exc:
            logger.warning("upstream %s realtime: %s", upstream.name, type(exc).__name__)
            upstream.health.failed()
            raise unreachable() from None
        upstream.health.succeeded()
        return socket

    async def _refusal(self, response: HandshakeResponse) -> OpenAIError:
        """The envelope for a handshake answered with an HTTP status: the upstream
        client's own mapping (401/403 upstream_auth_failed, 429, 5xx, scrubbed 4xx)."""
        if response.status_code < 400:
            return bad_response(f"HTTP {response.status_code} instead of a websocket")
        as_http = httpx.Response(
            response.status_code,
            headers=list(response.headers.raw_items()),
            stream=httpx.ByteStream(response.body or b""),  # read (and closed) as async
        )
        return await self.upstream._refusal(as_http)

    # --- client -> upstream -----------------------------------------------------------

    async def from_client(self, text: str | None, data: bytes | None) -> None:
        """A frame from the client: passed on (a response admitted first)."""
        if not self.forwarding or self.client.ended_by is not None:
            return
        try:
            event = client_event(text)
        except RealtimeError as exc:
            await self.client.send_event("error", error=protocol.client_error_body(exc, None))
            return
        kind = event.get("type")
        try:
            if kind == "response.create":
                text = await self._response_requested(event, text)
            elif kind == "session.update":
                text = await self._session_update(event, text)
        except Exception as exc:  # a bug, or the database away: one event, not the socket
            await self._error(exc, event.get("event_id"))
            return
        if text is not None:
            await self._to_upstream(text)

    async def _to_upstream(self, message: str | bytes | None) -> None:
        if message is None or self.socket is None:
            return
        with contextlib.suppress(ConnectionClosed):  # the pump sees the close and ends us
            await self.socket.send(message)

    async def _response_requested(self, event: dict, text: str) -> str | None:
        """Admit the response before the upstream sees it; None if it may not run."""
        event_id = protocol.event_id_of(event)
        call = await self._admitted(self._estimate(event), event_id)
        if call is None:
            return None
        if event_id is None:  # so an upstream refusal of it is recognised
            event_id = protocol.new_id("event")
            self.tagged.add(event_id)
            text = json.dumps({**event, "event_id": event_id})
        self.requested.append(RelayedResponse(call, event_id))
        return text

    def _estimate(self, event: dict) -> Metered:
        """What a response is admitted at: its token limit as output, as the local socket."""
        response = event.get("response")
        limit = self.max_output_tokens
        if isinstance(response, dict) and "max_output_tokens" in response:
            limit = response["max_output_tokens"]
        limit = _count(limit) or settings.AROUTER_CHAT_MAX_TOKENS
        return Metered(text_tokens_out=limit)

    async def _admitted(self, estimate: Metered, event_id: str | None) -> MeteredCall | None:
        """The key read again and the response admitted by its limits, or None: the
        session ended (credentials gone) or the client told why not."""
        try:
            api_key: ApiKey = await current_key(self.client.credential)
        except OpenAIError as exc:
            await self._end(exc, event_id)
            return None
        call = MeteredCall(api_key, self.entry, ENDPOINT, new_request_id())
        try:
            await call.admit(estimate)
        except OpenAIError as exc:
            await self.client.send_event("error", error=protocol.error_body(exc, event_id))
            return None
        call.attempt_log.add(self.upstream.label, "ok")
        return call

    async def _session_update(self, event: dict, text: str) -> str | None:
        session = event.get("session")
        if not isinstance(session, dict) or "model" not in session:
            return text
        if session["model"] not in (self.client.model, self.entry.id):
            await self._error(
                invalid_param(
                    f"This session is on `{self.client.model}`; it cannot change model.",
                    param="session.model",
                    code="invalid_value",
                ),
                protocol.event_id_of(event),
            )
            return None
        return json.dumps({**event, "session": {**session, "model": self.entry.target}})

    # --- upstream -> client -----------------------------------------------------------

    async def _pump(self) -> None:
        """Pass the upstream's events on until it closes (or the relay is closed). Also
        once the client is gone: a response.done still to come bills what it reports."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.socket:
                await self._from_upstream(message)
        await self._upstream_closed()

    async def _from_upstream(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self._to_client(bytes_data=message)
            return
        event = _json_object(message)
        handler = UPSTREAM_HANDLERS.get(event.get("type")) if event is not None else None
        if handler is not None:
            try:
                message = await handler(self, event, message)
            except Exception as exc:  # a bug or the database: logged, the event still passes
                logger.error("relaying %s failed", event.get("type"), exc_info=exc)
        if message is not None:
            await self._to_client(text_data=message)

    async def _to_client(self, **frame) -> None:
        if not self.forwarding or self.client.ended_by is not None:
            return  # the client left, or its session is ending: nothing more is sent
        try:
            await self.client.send(**frame)
        except Exception:  # the client is gone; its disconnect closes the relay
            self.forwarding = False

    async def _session(self, event: dict, message: str) -> str:
        session = event.get("session")
        if not isinstance(session, dict):
            return message
        self._follow_session(session)
        if "model" not in session:
            return message
        return json.dumps({**event, "session": {**session, "model": self.client.model}})

    def _follow_session(self, session: dict) -> None:
        """Remember what billing needs of the session: its output audio format (to time
        forwarded audio) and its response token limit (to admit responses)."""
        audio = session.get("audio")
        output = audio.get("output") if isinstance(audio, dict) else None
        fmt = output.get("format") if isinstance(output, dict) else None
        fmt = fmt.get("type") if isinstance(fmt, dict) else session.get("output_audio_format")
        self.audio_bytes_per_second = AUDIO_BYTES_PER_SECOND.get(fmt, PCM_BYTES_PER_SECOND)
        for name in ("max_output_tokens", "max_response_output_tokens"):
            if name in session:
                self.max_output_tokens = session[name]

    async def _response_created(self, event: dict, message: str) -> str | None:
        body = event.get("response")
        response_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(response_id, str):
            return message
        if self.requested:
            response = self.requested.popleft()
        else:  # started by the upstream (server VAD): admitted now, the client told first
            await self._to_client(text_data=message)
            message = None
            call = await self._admitted(self._estimate({}), None)
            if call is None:
                await self._cancel(response_id)
                return None
            response = RelayedResponse(call)
        # The row is written as the response starts (a worker that dies mid-response
        # leaves it, marked interrupted), beside the forwarding, not before it.
        response.started = asyncio.create_task(response.call.mark_started())
        self.responses[response_id] = response
        return message

    async def _cancel(self, response_id: str) -> None:
        """Cancel a response the upstream started that the key's limits refuse."""
        if self.client.ended_by is None and self.forwarding:
            cancel = {"type": "response.cancel", "response_id": response_id}
            await self._to_upstream(json.dumps(cancel))

    async def _audio_delta(self, event: dict, message: str) -> str:
        if (response := self.responses.get(event.get("response_id"))) is not None:
            response.audio_bytes += _base64_length(event.get("delta"))
        return message

    async def _text_delta(self, event: dict, message: str) -> str:
        delta = event.get("delta")
        if (response := self.responses.get(event.get("response_id"))) is not None:
            response.text_characters += len(delta) if isinstance(delta, str) else 0
        return message

    async def _response_done(self, event: dict, message: str) -> str:
        body = event.get("response")
        if not isinstance(body, dict):
            return message
        response = self.responses.pop(body.get("id"), None)
        if response is None:
            return message
        status = STATUS_CODES.get(body.get("status"), 200)
        charged = await self._bill(response, status, body.get("usage"))
        if isinstance(body.get("usage"), dict):
            usage = {**body["usage"], "cost": float(charged)}
            return json.dumps({**event, "response": {**body, "usage": usage}})
        return message

    async def _error_event(self, event: dict, message: str) -> str:
        error = event.get("error")
        if not isinstance(error, dict):
            return self.upstream.scrub(message)
        event_id = error.get("event_id")
        refused = next((r for r in self.requested if r.event_id == event_id), None)
        if event_id is not None and refused is not None:
            # The upstream refused a response.create: it will not start; nothing is billed.
            self.requested.remove(refused)
            await refused.call.finish(400)
        if event_id in self.tagged:
            self.tagged.discard(event_id)
            message = json.dumps({**event, "error": {**error, "event_id": None}})
        return self.upstream.scrub(message)

    # --- billing ----------------------------------------------------------------------

    def _made(self, response: RelayedResponse) -> Metered:
        """What a response without usage made, from what was forwarded of it."""
        seconds = response.audio_seconds(self.audio_bytes_per_second)
        return Metered(
            text_tokens_out=math.ceil(response.text_characters / CHARS_PER_TOKEN),
            audio_tokens_out=audio_tokens(seconds, audio_tokens_per_second(self.entry)),
        )

    async def _bill(self, response: RelayedResponse, status: int, usage: Any) -> Decimal:
        """Write the response's row: the upstream's usage, else what was forwarded."""
        metered = reported_usage(usage) or self._made(response)
        metered.audio_seconds_out = response.audio_seconds(self.audio_bytes_per_second)
        response.call.metered = metered
        if response.started is not None:
            await asyncio.gather(response.started, return_exceptions=True)
        return await response.call.finish(status)

    async def _bill_unfinished(self, status: int, requested_status: int) -> None:
        """Bill the responses still running (as made so far) and give back the
        admissions of those the upstream never started."""
        responses, self.responses = list(self.responses.values()), {}
        requested, self.requested = list(self.requested), deque()
        for response in responses:
            await self._bill(response, status, None)
        for response in requested:
            await response.call.finish(requested_status)

    # --- ending -----------------------------------------------------------------------

    async def _error(self, exc: Exception, event_id: Any) -> None:
        event_id = event_id if isinstance(event_id, str) else None
        if isinstance(exc, OperationalError | InterfaceError):
            logger.warning("database unavailable for a relayed realtime event: %s", exc)
            exc = database_unavailable()
        elif not isinstance(exc, OpenAIError):
            logger.error("relayed realtime event failed", exc_info=exc)
            exc = server_error()
        await self.client.send_event("error", error=protocol.error_body(exc, event_id))

    async def _end(self, exc: OpenAIError, event_id: str | None) -> None:
        """The credentials went away: stop relaying; the client gets the error and 1008."""
        self.forwarding = False
        await self.client.end_session(exc, event_id)

    async def _upstream_closed(self) -> None:
        """The upstream ended the session: the client's socket closes with its code."""
        if self.finished:
            return
        self.finished = True
        await self._bill_unfinished(502, 502)
        code, reason = self.socket.close_code, self.socket.close_reason or ""
        if code is None or code in UNSENDABLE_CODES:  # it dropped the connection
            await self._to_client(text_data=_interrupted_event())
            code, reason = UPSTREAM_FAILED, ""
        if self.forwarding and self.client.ended_by is None:
            self.forwarding = False
            with contextlib.suppress(Exception):  # the client may be gone too
                await self.client.close(code=code, reason=self.upstream.scrub(reason) or None)

    async def close(self) -> None:
        """The client left (or its session ended): close the upstream socket and bill
        what is running for what was forwarded of it."""
        self.forwarding = False
        if self.finished:
            return
        self.finished = True
        if self.pump is not None:
            self.pump.cancel()
            await asyncio.gather(self.pump, return_exceptions=True)
        await self._bill_unfinished(200, CLIENT_LEFT)
        if self.socket is not None:
            await self.socket.close()


def _interrupted_event() -> str:
    error = OpenAIError(
        "The upstream provider's realtime session broke off.",
        status=502,
        type=UPSTREAM,
        code="upstream_stream_interrupted",
    )
    return protocol.server_event("error", error=protocol.error_body(error))


UPSTREAM_HANDLERS = {
    "session.created": Relay._session,
    "session.updated": Relay._session,
    "response.created": Relay._response_created,
    "response.done": Relay._response_done,
    "error": Relay._error_event,
    **dict.fromkeys(AUDIO_DELTAS, Relay._audio_delta),
    **dict.fromkeys(TEXT_DELTAS, Relay._text_delta),
}
