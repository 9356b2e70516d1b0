"""The realtime relay: a session on an upstream's realtime model is passed through to the
upstream's own /v1/realtime, billed and limited per response here.

Clients are the official SDK (`client.realtime.connect`) and, where exact frames and close
codes matter, a plain websockets client, against the live server. Upstreams are a second
ARouter on loopback (a real turn on its engines, marked `engines`) and, for the finer
cases, a small loopback websocket server speaking the protocol (`FakeUpstream`): server
VAD responses, exact frames, refusals, closes.
"""

import base64
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
from django.conf import settings
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from accounts.models import ApiKey
from credentials.models import ProviderCredential
from tests.upstream_helpers import catalog_from, model_table, upstream_table
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_KEY = "sk-upstream-relay-secret-0123456789"
UPSTREAM_KEY_ENV = "ARRELAY_UPSTREAM_KEY"
MODEL, TARGET = "fake/realtime", "gpt-realtime-at-the-upstream"
TIMEOUT = 30
AUDIO_DELTA = base64.b64encode(b"\x01\x00" * 2400).decode()  # 0.1 s of 24 kHz pcm16
USAGE = {
    "total_tokens": 80,
    "input_tokens": 20,
    "output_tokens": 60,
    "input_token_details": {"text_tokens": 12, "audio_tokens": 8, "cached_tokens": 4},
    "output_token_details": {"text_tokens": 10, "audio_tokens": 50},
}
PRICE = {
    "per_million_text_input_tokens": 4,
    "per_million_text_output_tokens": 16,
    "per_million_audio_input_tokens": 32,
    "per_million_audio_output_tokens": 64,
}


def wait_for(condition: Callable[[], object], what: str, seconds: float = TIMEOUT):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


class FakeUpstream:
    """A loopback realtime server: answers session.update and response.create as OpenAI
    does (session.updated; response.created, audio and transcript deltas, response.done
    with USAGE), and records every frame and handshake it gets.

    `server_vad`: a commit starts a response without any response.create; `finish`: False
    leaves responses running (no response.done); `refuse`: response.create gets an `error`
    naming its event_id. `test.send` makes it send `frame` verbatim, `test.close` close
    with 4001."""

    def __init__(self, refuse_handshake: int | None = None) -> None:
        self.refuse_handshake = refuse_handshake
        self.server_vad = self.refuse = False
        self.finish = True
        self.received: list[str] = []
        self.requests: list = []  # handshake requests (path, headers)
        self.closed = threading.Event()
        self.ids = itertools.count(1)
        self.server = serve(self._serve, "127.0.0.1", 0, process_request=self._handshake)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.socket.getsockname()[1]}/v1"

    def events(self, kind: str) -> list[dict]:
        return [e for e in map(json.loads, list(self.received)) if e.get("type") == kind]

    def _handshake(self, connection: ServerConnection, request) -> Response | None:
        self.requests.append(request)
        if self.refuse_handshake:
            return connection.respond(self.refuse_handshake, "no\n")
        return None

    def _serve(self, ws: ServerConnection) -> None:
        model = parse_qs(urlparse(ws.request.path).query)["model"][0]
        audio = {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}}
        self._send(
            ws, "session.created", session={"type": "realtime", "model": model, "audio": audio}
        )
        try:
            for text in ws:
                self.received.append(text)
                self._answer(ws, json.loads(text))
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    def _send(self, ws: ServerConnection, type: str, **fields) -> None:
        ws.send(json.dumps({"type": type, "event_id": f"event_{next(self.ids)}", **fields}))

    def _answer(self, ws: ServerConnection, event: dict) -> None:
        kind = event.get("type")
        if kind == "session.update":
            self._send(ws, "session.updated", session=event["session"])
        elif kind == "response.create" and self.refuse:
            error = {
                "type": "invalid_request_error",
                "code": "conversation_already_has_active_response",
                "message": "Conversation already has an active response.",
                "param": None,
                "event_id": event.get("event_id"),
            }
            self._send(ws, "error", error=error)
        elif kind == "response.create":
            self._respond(ws)
        elif kind == "input_audio_buffer.commit" and self.server_vad:
            self._respond(ws, cancellable=True)
        elif kind == "response.cancel":
            response = {"id": event["response_id"], "status": "cancelled", "usage": None}
            self._send(ws, "response.done", response=response)
        elif kind == "test.send":
            ws.send(event["frame"])
        elif kind == "test.close":
            ws.close(4001, "bye")

    def _respond(self, ws: ServerConnection, cancellable: bool = False) -> None:
        """A response; `cancellable`: it waits a moment for a response.cancel after
        response.created (as a real model is still thinking then)."""
        response_id, item_id = f"resp_{next(self.ids)}", f"item_{next(self.ids)}"
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        self._send(ws, "response.created", response={"id": response_id, "status": "in_progress"})
        if cancellable:
            with contextlib.suppress(TimeoutError):
                self.received.append(ws.recv(timeout=0.5))
                self._answer(ws, json.loads(self.received[-1]))
                return
        for _ in range(3):
            self._send(
                ws, "response.output_audio.delta", **where, content_index=0, delta=AUDIO_DELTA
            )
        self._send(ws, "response.output_audio_transcript.delta", **where, content_index=0,
                   delta="Hello there, how can I help?")  # fmt: skip
        if self.finish:
            response = {"id": response_id, "status": "completed", "usage": USAGE}
            self._send(ws, "response.done", response=response)

    def __enter__(self) -> "FakeUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def relay_catalog(upstream_url: str) -> str:
    text = settings.AROUTER_CATALOG.read_text() + "\n"
    text += upstream_table("fake", upstream_url, UPSTREAM_KEY_ENV, max_retries=0)
    text += model_table(
        MODEL,
        "chat",
        "fake",
        TARGET,
        input_modalities=["text", "audio"],
        output_modalities=["text", "audio"],
        price=PRICE,
        options={"realtime": True, "audio_tokens_per_second": 10},
    )
    return text


@pytest.fixture
def relayed_to(arouter_server, tmp_path, monkeypatch):
    """Serve MODEL relayed to `upstream` (a FakeUpstream or a URL) until the block ends."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)

    @contextlib.contextmanager
    def relayed(upstream: FakeUpstream | str) -> Iterator:
        url = upstream if isinstance(upstream, str) else upstream.url
        with catalog_from(tmp_path / "catalog.toml", relay_catalog(url)):
            yield upstream

    return relayed


@pytest.fixture
def upstream(relayed_to) -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake, relayed_to(fake):
        yield fake


def raw_client(server, key: str, model: str = MODEL):
    url = server.url.replace("http", "ws") + f"/v1/realtime?model={model}"
    return connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=TIMEOUT)


def recv_until(connection, kind: str) -> list[dict]:
    events = []
    while True:
        events.append(json.loads(connection.recv(timeout=TIMEOUT)))
        if events[-1]["type"] == kind:
            return events


def rows(key) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(api_key=key.api_key).order_by("id"))


# --- frames, models, the upstream key ------------------------------------------------------


def test_frames_pass_unchanged_and_models_are_rewritten_both_ways(
    arouter_server, live_key, upstream
):
    with raw_client(arouter_server, live_key.raw) as ws:
        created = json.loads(ws.recv(timeout=TIMEOUT))
        assert created["type"] == "session.created"
        assert created["session"]["model"] == MODEL
        ws.send(
            json.dumps({"type": "session.update", "session": {"type": "realtime", "model": MODEL}})
        )
        updated = json.loads(ws.recv(timeout=TIMEOUT))
        assert (updated["type"], updated["session"]["model"]) == ("session.updated", MODEL)
        # Another model would be billed at this entry's prices: refused, not forwarded.
        ws.send('{"type": "session.update", "event_id": "evt_m", "session": {"model": "gpt-4o"}}')
        error = json.loads(ws.recv(timeout=TIMEOUT))["error"]
        assert (error["param"], error["event_id"]) == ("session.model", "evt_m")

        # What another parser could read as a response.create we never admitted: refused.
        for frame, code in (
            ('{"type": "session.update", "type": "response.create"}', "invalid_event"),
            ('{"type": "response.create",}', "invalid_json"),
            (b'{"type": "response.create"}', "invalid_event"),
        ):
            ws.send(frame)
            assert json.loads(ws.recv(timeout=TIMEOUT))["error"]["code"] == code

        odd = '{"type":"conversation.item.create",  "item": {"type": "message", "role": "user"} }'
        ws.send(odd)
        frame = '{ "type" : "rate_limits.updated", "rate_limits": [ ], "extra": "é\\u00e9" }'
        ws.send(json.dumps({"type": "test.send", "frame": frame}))
        assert ws.recv(timeout=TIMEOUT) == frame  # the upstream's frame, byte for byte
        ws.send('{"type": "response.create"}')
        seen = [ws.recv(timeout=TIMEOUT)]  # a response: all the client receives of it
        while '"response.done"' not in seen[-1]:
            seen.append(ws.recv(timeout=TIMEOUT))
    assert odd in upstream.received  # the client's frame, byte for byte
    assert len(upstream.events("response.create")) == 1  # only the admitted one
    (update,) = upstream.events("session.update")
    assert update["session"]["model"] == TARGET
    (request,) = upstream.requests
    assert request.path == f"/v1/realtime?model={TARGET}"
    assert request.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert all(UPSTREAM_KEY not in text for text in [json.dumps(created), *seen])


def test_the_teams_own_upstream_key_is_used(arouter_server, live_key, upstream):
    ProviderCredential.store(live_key.api_key.team, "fake", "sk-team-own-key-9876")
    with raw_client(arouter_server, live_key.raw) as ws:
        assert '"session.created"' in ws.recv(timeout=TIMEOUT)
    assert upstream.requests[0].headers["Authorization"] == "Bearer sk-team-own-key-9876"


# --- billing and limits, per response ------------------------------------------------------


def test_each_response_is_a_ledger_row_with_the_upstreams_usage(openai_client, live_key, upstream):
    with openai_client.realtime.connect(model=MODEL) as connection:
        assert connection.recv().session.model == MODEL
        dones = []
        for _ in range(2):
            connection.response.create()
            events = []
            while not events or events[-1].type != "response.done":
                events.append(connection.recv())
            assert sum(e.type == "response.output_audio.delta" for e in events) == 3
            dones.append(events[-1])
    records = rows(live_key)
    assert [r.status_code for r in records] == [200, 200]
    for record, done in zip(records, dones, strict=True):
        assert (record.model, record.endpoint, record.provider) == (
            MODEL,
            "/v1/realtime",
            "upstream:fake",
        )
        assert (record.text_tokens_in, record.audio_tokens_in) == (12, 8)
        assert (record.text_tokens_out, record.audio_tokens_out) == (10, 50)
        assert record.audio_seconds_out == pytest.approx(0.3)
        expected = (12 * 4 + 10 * 16 + 8 * 32 + 50 * 64) / Decimal(1_000_000)
        assert record.cost == expected
        # The usage the client sees carries our charge.
        assert Decimal(str(done.response.usage.model_extra["cost"])) == record.cost
        assert done.response.usage.output_tokens == 60


def in_one_rate_window() -> None:
    if time.time() % 60 > 50:  # the next requests must count in the same minute
        time.sleep(61 - time.time() % 60)


def test_responses_the_limits_refuse_never_reach_the_upstream(openai_client, live_key, upstream):
    in_one_rate_window()
    ApiKey.objects.filter(pk=live_key.api_key.pk).update(requests_per_minute=1)
    with openai_client.realtime.connect(model=MODEL) as connection:
        connection.recv()
        connection.response.create()
        while connection.recv().type != "response.done":
            pass
        connection.response.create(event_id="evt_second")
        error = connection.recv()
        assert error.type == "error"
        assert (error.error.code, error.error.event_id) == ("rate_limit_exceeded", "evt_second")

        ApiKey.objects.filter(pk=live_key.api_key.pk).update(
            requests_per_minute=None, monthly_budget_usd=0
        )
        connection.response.create(event_id="evt_third")
        error = connection.recv()
        assert (error.error.code, error.error.event_id) == ("insufficient_quota", "evt_third")
    assert len(upstream.events("response.create")) == 1
    assert [r.status_code for r in rows(live_key)] == [200]


def test_an_upstream_refusing_a_response_frees_its_admission(openai_client, live_key, upstream):
    ApiKey.objects.filter(pk=live_key.api_key.pk).update(max_concurrent_requests=1)
    upstream.refuse = True
    with openai_client.realtime.connect(model=MODEL) as connection:
        connection.recv()
        connection.response.create()
        error = connection.recv()
        assert error.error.code == "conversation_already_has_active_response"
        assert error.error.event_id is None  # the id the relay gave it is taken off again
        upstream.refuse = False
        connection.response.create()  # the one slot is free again
        while connection.recv().type != "response.done":
            pass
    assert [r.status_code for r in rows(live_key)] == [400, 200]
    assert rows(live_key)[0].cost == 0


def test_responses_the_upstream_starts_are_admitted_or_cancelled(openai_client, live_key, upstream):
    upstream.server_vad = True
    with openai_client.realtime.connect(model=MODEL) as connection:
        connection.recv()
        connection.input_audio_buffer.commit()  # the upstream answers on its own
        while connection.recv().type != "response.done":
            pass
        assert [r.status_code for r in rows(live_key)] == [200]

        ApiKey.objects.filter(pk=live_key.api_key.pk).update(monthly_budget_usd=0)
        connection.input_audio_buffer.commit()
        events = [connection.recv()]
        while events[-1].type != "response.done":
            events.append(connection.recv())
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    (error,) = [e for e in events if e.type == "error"]
    assert error.error.code == "insufficient_quota"
    assert events[-1].response.status == "cancelled"
    (cancel,) = upstream.events("response.cancel")
    assert cancel["response_id"] == events[0].response.id
    assert len(rows(live_key)) == 1  # the refused one is not billed


# --- ends: the upstream down or closing, the key revoked, the client leaving ----------------


@pytest.mark.parametrize(
    ("status", "code"), [(401, "upstream_auth_failed"), (None, "upstream_unreachable")]
)
def test_an_upstream_that_cannot_be_used_is_an_error_and_a_close(
    arouter_server, live_key, relayed_to, status, code
):
    with contextlib.ExitStack() as stack:
        if status is None:
            url = f"http://127.0.0.1:{_closed_port()}/v1"
        else:
            url = stack.enter_context(FakeUpstream(refuse_handshake=status)).url
        stack.enter_context(relayed_to(url))
        with raw_client(arouter_server, live_key.raw) as ws:
            event = json.loads(ws.recv(timeout=TIMEOUT))
            assert event["type"] == "error"
            assert event["error"]["code"] == code
            assert "127.0.0.1" not in event["error"]["message"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 1011
    assert rows(live_key) == []


def test_the_upstreams_close_code_reaches_the_client(arouter_server, live_key, upstream):
    with raw_client(arouter_server, live_key.raw) as ws:
        ws.recv(timeout=TIMEOUT)
        ws.send('{"type": "test.close"}')
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")


def test_a_key_revoked_mid_session_ends_it_at_the_next_response(arouter_server, live_key, upstream):
    with raw_client(arouter_server, live_key.raw) as ws:
        ws.recv(timeout=TIMEOUT)
        # Behind the key cache and without the revocation broadcast: read at the response.
        ApiKey.objects.filter(pk=live_key.api_key.pk).update(revoked_at=timezone.now())
        ws.send('{"type": "response.create", "event_id": "evt_r"}')
        error = json.loads(ws.recv(timeout=TIMEOUT))["error"]
        assert (error["code"], error["event_id"]) == ("invalid_api_key", "evt_r")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 1008
    assert upstream.closed.wait(TIMEOUT)
    assert upstream.events("response.create") == []


def test_a_client_that_leaves_closes_the_upstream_and_pays_what_was_sent(
    openai_client, live_key, upstream
):
    upstream.finish = False  # the response is still running when the client goes
    with openai_client.realtime.connect(model=MODEL) as connection:
        connection.recv()
        connection.response.create()
        while connection.recv().type != "response.output_audio_transcript.delta":
            pass
    assert upstream.closed.wait(TIMEOUT)
    (record,) = wait_for(
        lambda: list(UsageRecord.objects.finished().filter(api_key=live_key.api_key)),
        "the row of the abandoned response",
    )
    assert record.status_code == 200
    assert record.audio_seconds_out == pytest.approx(0.3)
    assert record.audio_tokens_out == 3  # 0.3 s at 10 audio tokens a second
    assert record.text_tokens_out == 7  # 28 transcript characters, 4 a token
    assert record.cost > 0


# --- a real turn on a second ARouter ---------------------------------------------------------


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    from tests.peer_arouter import PeerARouter

    server = PeerARouter(tmp_path_factory.mktemp("peer-arouter")).start()
    yield server
    server.stop()


@pytest.mark.engines
def test_a_turn_relayed_to_a_second_arouter(openai_client, live_key, peer, tmp_path, monkeypatch):
    from tests.chat_speech import speak

    monkeypatch.setenv("ARRELAY_PEER_KEY", peer.key)
    text = settings.AROUTER_CATALOG.read_text() + "\n"
    text += upstream_table("peer", peer.url, "ARRELAY_PEER_KEY")
    text += model_table(
        "peer/realtime",
        "chat",
        "peer",
        "local/audio-chat",
        input_modalities=["text", "audio"],
        output_modalities=["text", "audio"],
        price=PRICE,
        options={"realtime": True},
    )
    question = base64.b64encode(speak("What is the capital of France?").tobytes()).decode()
    received: list[bytes] = []
    with (
        catalog_from(tmp_path / "catalog.toml", text),
        openai_client.realtime.connect(model="peer/realtime") as connection,
    ):

        def recv():
            received.append(connection.recv_bytes())
            return connection.parse_event(received[-1])

        assert recv().session.model == "peer/realtime"
        connection.session.update(session={"type": "realtime", "model": "peer/realtime"})
        assert recv().session.model == "peer/realtime"  # the peer took its own name for it
        connection.input_audio_buffer.append(audio=question)
        connection.input_audio_buffer.commit()
        connection.response.create(response={"max_output_tokens": 24})
        events = [recv()]
        while events[-1].type != "response.done":
            events.append(recv())
    heard = next(
        e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
    )
    assert "capital of" in heard.transcript.lower()  # the peer heard the question
    audio = [e for e in events if e.type == "response.output_audio.delta"]
    assert sum(len(base64.b64decode(e.delta)) for e in audio) > 12_000  # a quarter second
    transcript = next(e for e in events if e.type == "response.output_audio_transcript.done")
    assert transcript.transcript.strip()
    assert all(peer.key.encode() not in frame for frame in received)
    usage = events[-1].response.usage
    (record,) = UsageRecord.objects.filter(api_key=live_key.api_key)
    assert (record.status_code, record.provider) == (200, "upstream:peer")
    assert record.text_tokens_in == usage.input_token_details.text_tokens
    assert record.audio_tokens_out == usage.output_token_details.audio_tokens > 0
    assert record.text_tokens_out == usage.output_token_details.text_tokens
    assert record.cost > 0
    assert Decimal(str(usage.model_extra["cost"])) == record.cost
