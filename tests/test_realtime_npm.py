"""The realtime socket with the `openai` npm package's OpenAIRealtimeWS as the client.

The npm SDK builds its realtime URL from the client's baseURL and always opens `wss://`,
so it gets a live server of its own speaking TLS, with a certificate made here for
127.0.0.1 and handed to the client as its CA (tests/js/realtime_ws.mjs). Each event the
snippet prints gets the checks of test_realtime_sdk: the Python SDK's model of its type
and OpenAI's published schema.
"""

import datetime
import ipaddress
import json
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from openai._models import construct_type_unchecked
from openai.types.realtime import RealtimeServerEvent

from tests.conftest import LiveServer
from tests.test_realtime_sdk import Received, assert_response_sequence, check_event
from usage.models import UsageRecord

pytestmark = pytest.mark.engines


def write_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """The app under uvicorn on loopback with TLS; (https base URL, CA file)."""
    cert_path, key_path = write_certificate(tmp_path_factory.mktemp("tls"))
    server = LiveServer(ssl_certfile=str(cert_path), ssl_keyfile=str(key_path))
    server.start()
    yield server.url.replace("http://", "https://") + "/v1", cert_path
    server.stop()


def received(line: str) -> Received:
    """A printed event, parsed as the Python SDK's connection parses it, and checked."""
    parsed = construct_type_unchecked(value=json.loads(line), type_=cast(Any, RealtimeServerEvent))
    return Received(parsed, check_event(line.encode(), parsed), 0.0)


def test_openai_realtime_ws_from_npm_converses_in_text(
    run_js_snippet, tls_server, live_key, tmp_path, monkeypatch
):
    base_url, ca = tls_server
    monkeypatch.setenv("AROUTER_TLS_BASE_URL", base_url)
    monkeypatch.setenv("AROUTER_TLS_CA", str(ca))
    run = run_js_snippet("realtime_ws.mjs", tmp_path)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    printed = [json.loads(line) for line in lines]
    sdk_errors = [e for e in printed if e["type"] == "sdk.error"]
    closed = [e for e in printed if e["type"] == "socket.closed"]
    server_events = [
        received(line)
        for line, event in zip(lines, printed, strict=True)
        if event["type"] not in ("sdk.error", "socket.closed")
    ]
    events = [r.data for r in server_events]

    kinds = [event["type"] for event in events]
    assert kinds[:2] == ["session.created", "error"], kinds
    # The unknown event: an error event, which the npm SDK raises as its error, and
    # the socket lives on.
    assert events[1]["error"]["event_id"] == "evt_unknown"
    assert events[1]["error"]["type"] == "invalid_request_error"
    assert [e["code"] for e in sdk_errors] == [events[1]["error"]["code"]]
    updated = events[2]
    assert updated["type"] == "session.updated"
    assert updated["session"]["output_modalities"] == ["text"]
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    assert kinds[3:5] == ["conversation.item.added", "conversation.item.done"], kinds
    user_item = events[3]["item"]
    assert user_item["role"] == "user"
    assert user_item["content"] == [
        {"type": "input_text", "text": "What is the capital of France?"}
    ]

    done = events[-1]
    assert done["type"] == "response.done"
    response = done["response"]
    assert_response_sequence(server_events, response["id"])
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text.strip()
    assert response["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert response["status"] in ("completed", "incomplete")
    assert 0 < response["usage"]["output_token_details"]["text_tokens"] <= 24
    assert response["usage"]["output_token_details"]["audio_tokens"] == 0
    assert closed == [{"type": "socket.closed", "code": 1000}]
    (row,) = UsageRecord.objects.filter(api_key=live_key.api_key)
    assert float(row.cost) == pytest.approx(response["usage"]["cost"], rel=1e-6)
