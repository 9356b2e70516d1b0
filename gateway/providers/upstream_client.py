"""HTTP to one OpenAI-compatible upstream: a pooled client, retries, cooldown, error mapping.

One `UpstreamClient` per `[upstreams.NAME]` table, shared by every model routed there.
It keeps one pooled httpx transport per event loop (keep-alive, optional HTTP/2) and
a health record: after `cooldown_after` consecutive failed requests the upstream is skipped
for `cooldown_seconds`, so a fallback answers at once instead of waiting on a dead host.

Retries (connect errors, 429 honouring `retry-after`, 5xx) happen only in `open()`, before
the response body is handed to anyone, so nothing has reached our client yet. Every try is
appended to the request's attempt log. Failures become OpenAI envelopes that never name
the upstream's URL or key: a 4xx keeps the upstream's message (scrubbed), an unreachable
upstream is 502, a timeout is 504.
"""

import asyncio
import functools
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from core.errors import UPSTREAM, OpenAIError
from gateway.catalog import Upstream
from gateway.providers.attempts import current_attempt_log
from gateway.providers.http11 import transport_for

logger = logging.getLogger(__name__)

MB = 1024 * 1024
RETRYABLE_STATUSES = {408, 409, 429, 500, 502, 503, 504}


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def json_body(payload: Any) -> bytes:
    """`payload` as httpx's `json=` writes it (compact, UTF-8): by orjson, which encodes a
    body carrying base64 audio in microseconds rather than most of a millisecond per 100 KB;
    by the standard library for what orjson refuses (an integer past 64 bits, relayed as a
    client sent it)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _with_json_content(kwargs: dict[str, Any]) -> dict[str, Any]:
    content = json_body(kwargs.pop("json"))
    headers = {"content-type": "application/json", **kwargs.get("headers", {})}
    return {**kwargs, "content": content, "headers": headers}


def _openai_error_fields(body: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of OpenAI's error envelope (`{"error": {...}}` or a string)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or ""), error.get("param"), error.get("code")
    if isinstance(error, str):
        return error, None, None
    return "", None, None


@dataclass(frozen=True)
class Dialect:
    """How a service differs from OpenAI at the HTTP level: how its key is sent, and
    where its error bodies keep the message. Vendors (Deepgram, ElevenLabs, Azure, ...)
    pass their own to `client_for`; pooling, retries, cooldown and per-team keys are shared."""

    auth_headers: Callable[[str], dict[str, str]] = _bearer
    error_fields: Callable[[Any], tuple[str, str | None, str | None]] = _openai_error_fields


OPENAI = Dialect()


@dataclass(frozen=True)
class UpstreamOptions:
    """The tunables of an `[upstreams.NAME]` table, with defaults that suit OpenAI."""

    connect_timeout: float = 5.0
    # Longest wait for the next received bytes; a long transcription is silent until done.
    read_timeout: float = 300.0
    request_timeout: float = 600.0  # whole request, retries included, until headers arrive
    max_retries: int = 2
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    cooldown_after: int = 3
    cooldown_seconds: float = 30.0
    max_connections: int = 100
    http2: bool = False
    max_upload_mb: float = 25.0
    accepted_formats: tuple[str, ...] = ()  # empty: the upstream accepts every format
    chunk_concurrency: int = 4

    @classmethod
    def from_table(cls, options: dict[str, Any]) -> "UpstreamOptions":
        known = {name: options[name] for name in cls.__dataclass_fields__ if name in options}
        if "accepted_formats" in known:
            known["accepted_formats"] = tuple(str(f).lower() for f in known["accepted_formats"])
        return cls(**known)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


def unreachable() -> OpenAIError:
    return OpenAIError(
        "The upstream provider could not be reached. Please try again later.",
        status=502,
        type=UPSTREAM,
        code="upstream_unreachable",
    )


def timed_out() -> OpenAIError:
    return OpenAIError(
        "The upstream provider did not answer in time.",
        status=504,
        type=UPSTREAM,
        code="upstream_timeout",
    )


def auth_failed() -> OpenAIError:
    """Our credentials for the upstream are wrong: the gateway's problem, not the client's."""
    return OpenAIError(
        "The upstream provider rejected the gateway's credentials.",
        status=502,
        type=UPSTREAM,
        code="upstream_auth_failed",
    )


def upstream_unpaid() -> OpenAIError:
    """The gateway's upstream account cannot pay (HTTP 402, e.g. out of credits): the
    gateway's problem, not the client's request; another provider may still answer."""
    return OpenAIError(
        "The upstream provider refused the gateway's account: it is out of credits.",
        status=502,
        type=UPSTREAM,
        code="upstream_payment_required",
    )


def cooling_down() -> OpenAIError:
    return OpenAIError(
        "The upstream provider is temporarily unavailable after repeated failures.",
        status=503,
        type=UPSTREAM,
        code="upstream_unavailable",
    )


def bad_response(detail: str) -> OpenAIError:
    return OpenAIError(
        f"The upstream provider sent an invalid response ({detail}).",
        status=502,
        type=UPSTREAM,
        code="upstream_invalid_response",
    )


class Health:
    """Consecutive failures of one upstream, and until when it is skipped."""

    def __init__(self, options: UpstreamOptions) -> None:
        self.options = options
        self.failures = 0
        self.cooling_until = 0.0
        self._lock = threading.Lock()

    def is_cooling(self) -> bool:
        return time.monotonic() < self.cooling_until

    def succeeded(self) -> None:
        with self._lock:
            self.failures = 0
            self.cooling_until = 0.0

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.options.cooldown_after:
                self.cooling_until = time.monotonic() + self.options.cooldown_seconds
                self.failures = 0


def retry_delay(options: UpstreamOptions, attempt: int, response: httpx.Response | None) -> float:
    """Seconds before the next try: the upstream's `retry-after`, else jittered backoff."""
    if response is not None:
        header = response.headers.get("retry-after-ms")
        if header:
            try:
                return min(float(header) / 1000, options.backoff_max)
            except ValueError:
                pass
        header = response.headers.get("retry-after")
        if header:
            try:
                return min(float(header), options.backoff_max)
            except ValueError:
                pass
    ceiling = min(options.backoff_max, options.backoff_base * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in step


class TeamKeys:
    """Teams' own keys for one upstream (credentials.ProviderCredential), cached briefly.

    A team that stored a key is billed by the upstream on its own account; others use the
    catalog's key. Cached for TEAM_KEY_TTL seconds, so a request costs no database query.
    """

    TTL = 30.0

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._cache: dict[int, tuple[str | None, float]] = {}

    async def get(self, team_id: int) -> str | None:
        cached = self._cache.get(team_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        from credentials.models import ProviderCredential

        try:
            secret = await ProviderCredential.secret_for(team_id, self.upstream)
        except ValueError as exc:  # stored under another AROUTER_CREDENTIALS_KEY
            logger.warning("team %s, upstream %s: %s", team_id, self.upstream, exc)
            secret = None
        self._cache[team_id] = (secret, time.monotonic() + self.TTL)
        return secret

    def known(self) -> list[str]:
        return [secret for secret, _ in self._cache.values() if secret]


@dataclass(frozen=True)
class Pool:
    """One event loop's connections to an upstream, and the headers every request has."""

    transport: httpx.AsyncBaseTransport
    headers: dict[str, str]


class UpstreamClient:
    def __init__(self, upstream: Upstream, dialect: Dialect = OPENAI) -> None:
        self.upstream = upstream
        self.dialect = dialect
        self.name = upstream.name
        self.label = f"upstream:{upstream.name}"
        self.options = UpstreamOptions.from_table(upstream.options)
        self.health = Health(self.options)
        self.team_keys = TeamKeys(upstream.name)
        self._pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        options = self.options
        self._timeouts = {
            "connect": options.connect_timeout,
            "read": options.read_timeout,
            "write": options.read_timeout,
            "pool": options.connect_timeout,
        }

    # --- plumbing -----------------------------------------------------------------------

    def pool(self) -> Pool:
        """This loop's pool (httpx transports belong to the loop that first used them;
        tests run several loops)."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            with self._lock:
                pool = self._pools.get(loop)
                if pool is None:
                    pool = self._new_pool()
                    self._pools[loop] = pool
        return pool

    def _new_pool(self) -> Pool:
        limits = httpx.Limits(
            max_connections=self.options.max_connections,
            max_keepalive_connections=self.options.max_connections,
            keepalive_expiry=30,
        )
        transport = transport_for(self.upstream.base_url, http2=self.options.http2, limits=limits)
        # No Accept-Encoding: audio is passed on as the upstream sent it (raw), so it must
        # not arrive compressed.
        headers = {"accept": "*/*", "user-agent": "arouter"}
        if key := self.upstream.api_key():
            headers.update(self.dialect.auth_headers(key))
        return Pool(transport, {name.lower(): value for name, value in headers.items()})

    def build_request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Request:
        """The request for `path` under the upstream's base URL, with `params` (name and
        value pairs, or a mapping, of strings) added to its query, the gateway's headers
        (`headers` win) and the upstream's timeouts."""
        merged = self.pool().headers
        if headers:  # one header set built, not a copy then an update (names are lowercase)
            merged = {**merged, **{name.lower(): value for name, value in headers.items()}}
        if params:
            # Appended as text, so the URL is parsed once and cached with its query: httpx's
            # merge of parameters into a parsed URL cost a tenth of a millisecond a request.
            # A name the path's query already has is repeated, not replaced as httpx's merge
            # replaced it; no caller passes one.
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params)}"
        url = upstream_url(self.upstream.base_url, path)
        extensions = {"timeout": self._timeouts}
        return httpx.Request(method, url, headers=merged, content=content, extensions=extensions)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        # The transport alone, not an httpx.AsyncClient: a client's cookie jar would carry
        # one team's upstream cookies into another's requests, and its redirect, auth and
        # cookie machinery was a tenth of a proxied request's time. Redirects were never
        # followed (httpx's default), so nothing else changes.
        response = await self.pool().transport.handle_async_request(request)
        response.request = request
        return response

    def scrub(self, text: str) -> str:
        """Remove the upstream's address and keys from text we might show a client."""
        for secret in (self.upstream.api_key(), self.upstream.base_url, *self.team_keys.known()):
            if secret:
                text = text.replace(secret, "[upstream]")
        return text

    # --- requests -----------------------------------------------------------------------

    async def open(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Send a request and return its response with the body not yet read.

        Retries while nothing of the response has been passed on. The caller must close
        the response (`aclose()`), or use `request()` for small bodies.
        """
        log = current_attempt_log()
        if self.health.is_cooling():
            log.add(self.label, "cooling_down")
            raise cooling_down()
        if "json" in kwargs:
            kwargs = _with_json_content(kwargs)
        if log.team_id is not None and (team_key := await self.team_keys.get(log.team_id)):
            kwargs["headers"] = {**kwargs.get("headers", {}), **self.dialect.auth_headers(team_key)}
        deadline = time.monotonic() + self.options.request_timeout
        attempt = 0
        while True:
            response: httpx.Response | None = None
            failure: OpenAIError
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    response = await self._send(self.build_request(method, path, **kwargs))
            except (TimeoutError, httpx.TimeoutException):
                log.add(self.label, "timeout")
                self.health.failed()
                raise timed_out() from None
            except (httpx.TransportError, OSError) as exc:
                log.add(self.label, "connect_error")
                logger.warning("upstream %s: %s", self.name, type(exc).__name__)
                failure = unreachable()
            else:
                if response.status_code < 400:
                    log.add(self.label, "ok")
                    self.health.succeeded()
                    return response
                log.add(self.label, str(response.status_code))
                if response.status_code not in RETRYABLE_STATUSES:
                    self.health.succeeded()  # the upstream is alive; the request was refused
                    raise await self._refusal(response)
                failure = await self._refusal(response)
            delay = retry_delay(self.options, attempt, response)
            if attempt >= self.options.max_retries or time.monotonic() + delay >= deadline:
                # Out of tries (or of time to wait for the next): the last failure stands.
                self.health.failed()
                raise failure
            attempt += 1
            await asyncio.sleep(delay)

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """`open()` then read the whole (small) body: JSON answers."""
        response = await self.open(method, path, **kwargs)
        try:
            await response.aread()
        except httpx.TimeoutException:
            raise timed_out() from None
        except httpx.TransportError:
            raise unreachable() from None
        finally:
            await response.aclose()
        return response

    async def json(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        response = await self.request(method, path, **kwargs)
        return self.parse_json(response)

    def parse_json(self, response: httpx.Response) -> dict[str, Any]:
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type:
            raise bad_response(f"expected JSON, got {content_type.split(';')[0] or 'nothing'}")
        try:
            body = orjson.loads(response.content)
        except ValueError:
            raise bad_response("malformed JSON") from None
        if not isinstance(body, dict):
            raise bad_response("expected a JSON object")
        return body

    async def _refusal(self, response: httpx.Response) -> OpenAIError:
        """The envelope a client sees for an upstream error status (body read and closed)."""
        try:
            await response.aread()
        except httpx.HTTPError:
            pass
        finally:
            await response.aclose()
        status = response.status_code
        try:
            message, param, code = self.dialect.error_fields(json.loads(response.content))
        except (ValueError, AttributeError, TypeError):
            message, param, code = "", None, None
        message = self.scrub(message)
        if status in (401, 403):
            return auth_failed()
        if status == 402:
            return upstream_unpaid()
        if status == 429:
            headers = {}
            if retry_after := response.headers.get("retry-after"):
                headers["retry-after"] = retry_after
            return OpenAIError(
                message or "The upstream provider is rate limiting requests.",
                status=429,
                code=code or "rate_limit_exceeded",
                headers=headers,
            )
        if status >= 500 or status in RETRYABLE_STATUSES:
            return OpenAIError(
                "The upstream provider failed to process the request.",
                status=502,
                type=UPSTREAM,
                code="upstream_error",
            )
        return OpenAIError(
            message or f"The upstream provider refused the request (HTTP {status}).",
            status=status if status in (400, 404, 413, 415) else 400,
            param=param,
            code=code,
        )

    async def aclose(self) -> None:
        for pool in list(self._pools.values()):
            await pool.transport.aclose()


@functools.lru_cache(maxsize=1024)
def upstream_url(base_url: str, path: str) -> httpx.URL:
    """`path` (with any query) under `base_url`'s path, as httpx's `base_url=` joins them;
    cached, since parsing a URL costs more than the rest of building a request. Joined as
    text and parsed once: paths with ids in them (a transcript's) miss the cache, and
    httpx's own join parses three URLs."""
    if urlsplit(path).scheme:
        return httpx.URL(path)
    return httpx.URL(base_url.rstrip("/") + "/" + path.lstrip("/"))


_clients: dict[str, UpstreamClient] = {}
_clients_lock = threading.Lock()


def client_for(upstream: Upstream, dialect: Dialect = OPENAI) -> UpstreamClient:
    """The shared client of an upstream (one pool and one health record per upstream)."""
    client = _clients.get(upstream.name)
    if client is None or client.upstream != upstream or client.dialect != dialect:
        with _clients_lock:
            client = _clients.get(upstream.name)
            if client is None or client.upstream != upstream or client.dialect != dialect:
                client = UpstreamClient(upstream, dialect)
                _clients[upstream.name] = client
    return client


def forget_clients() -> None:
    """Drop every upstream client and its health (tests that swap catalogs use this)."""
    with _clients_lock:
        _clients.clear()
