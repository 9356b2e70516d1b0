"""Malformed client events on the realtime socket: OpenAI's `error` event, and the socket
stays usable (each case is followed by an event that works).

Also through the official SDK (`client.realtime.connect`) against a live uvicorn.
"""

import logging

import pybase64
import pytest

from tests import test_realtime as rt

pytestmark = pytest.mark.django_db(transaction=True)


async def expect_client_error(comm, param: str | None, code: str, event_id: str | None) -> dict:
    event = await rt.receive(comm)
    assert event["type"] == "error", event
    error = event["error"]
    assert set(error) == {"message", "type", "param", "code", "event_id"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"], error["event_id"]) == (param, code, event_id)
    assert error["message"]
    return error


async def still_usable(comm, voice: str) -> dict:
    """A valid session.update right after: answered, and applied."""
    await rt.send(comm, type="session.update", session={"audio": {"output": {"voice": voice}}})
    updated = await rt.receive(comm)
    assert updated["type"] == "session.updated", updated
    assert updated["session"]["audio"]["output"]["voice"] == voice
    return updated["session"]


IN, OUT = "session.audio.input", "session.audio.output"


def inp(**fields) -> dict:
    return {"audio": {"input": fields}}


def out(**fields) -> dict:
    return {"audio": {"output": fields}}


TD = f"{IN}.turn_detection"
# (session, the param named, the code): each sent beside a valid field, on one socket.
MALFORMED = [
        ({"audio": {"output": "x"}}, OUT, "invalid_type"),
        ({"audio": {"input": "x"}}, IN, "invalid_type"),
        ({"voice": []}, "session.voice", "invalid_type"),
        ({"audio": "x"}, "session.audio", "invalid_type"),
        (out(voice={"name": "alloy"}), f"{OUT}.voice", "invalid_type"),
        (out(format=16), f"{OUT}.format", "invalid_type"),
        (inp(format=["pcm16"]), f"{IN}.format", "invalid_type"),
        (inp(format="g722"), f"{IN}.format", "invalid_value"),
        (inp(format={"type": "audio/pcm", "rate": 16000}), f"{IN}.format", "invalid_value"),
        (inp(turn_detection="vad"), f"{IN}.turn_detection", "invalid_type"),
        (inp(turn_detection={"type": "magic_vad"}), f"{IN}.turn_detection.type", "invalid_value"),
        (inp(turn_detection={"silence_duration_ms": -1}), f"{TD}.silence_duration_ms",
         "integer_below_min_value"),
        (inp(turn_detection={"type": "semantic_vad", "threshold": 0.5}), f"{TD}.threshold",
         "unknown_parameter"),
        (inp(transcription={"model": "local/piper"}), f"{IN}.transcription.model", "invalid_value"),
        (inp(transcription={"model": 1}), f"{IN}.transcription.model", "invalid_type"),
        (out(speed="fast"), f"{OUT}.speed", "invalid_type"),
        (out(pitch=2), f"{OUT}.pitch", "unknown_parameter"),
        ({"temperature": True}, "session.temperature", "invalid_type"),
        ({"temperature": 3}, "session.temperature", "invalid_value"),
        ({"instructions": ["be brief"]}, "session.instructions", "invalid_type"),
        ({"output_modalities": "audio"}, "session.output_modalities", "invalid_value"),
        ({"modalities": [["text"]]}, "session.modalities", "invalid_value"),
        ({"max_response_output_tokens": 0}, "session.max_response_output_tokens", "invalid_value"),
        ({"type": "conversation"}, "session.type", "invalid_value"),
        ({"type": 7}, "session.type", "invalid_type"),
        ({"model": "local/whisper-base"}, "session.model", "invalid_value"),
        ({"tools": {}}, "session.tools", "invalid_type"),
        ({"tools": [{"type": "function", "name": "f"}]}, "session.tools", "invalid_value"),
        ({"tracing": 5}, "session.tracing", "invalid_type"),
        ({"frobnicate": 1}, "session.frobnicate", "unknown_parameter"),
        ("x", "session", "invalid_type"),
]  # fmt: skip


async def test_malformed_session_updates_are_errors_that_change_nothing(api_key):
    comm, created = await rt.open_session(api_key.raw)
    for n, (session, param, code) in enumerate(MALFORMED):
        # A valid field beside the bad one: an update applies all or nothing.
        update = (
            {"instructions": "Be a pirate.", **session} if isinstance(session, dict) else session
        )
        await rt.send(comm, type="session.update", session=update, event_id=f"evt_{n}")
        await expect_client_error(comm, param, code, f"evt_{n}")
        after = await still_usable(comm, "nova" if n % 2 else "alloy")
        assert after["instructions"] == created["session"]["instructions"] == "", session

    # The socket still takes a full update, in the beta shape as well.
    update = {
        "type": "realtime",
        "voice": "nova",
        "modalities": ["text", "audio"],
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "turn_detection": None,
        "input_audio_transcription": {"model": "whisper-1"},
        "max_response_output_tokens": 64,
        "temperature": 0.6,
        "speed": 1.0,
        "tools": [],
        "tool_choice": "auto",
        "tracing": None,
    }
    await rt.send(comm, type="session.update", session=update)
    session = (await rt.receive(comm))["session"]
    assert session["audio"]["output"]["voice"] == "nova"
    assert session["output_modalities"] == ["audio"]
    assert session["max_output_tokens"] == 64
    await comm.disconnect()


async def test_a_json_event_nested_past_the_stack_is_an_error(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await comm.send_to(text_data="[" * 100_000)
    await expect_client_error(comm, None, "invalid_json", None)
    await comm.send_to(text_data='{"type": "session.update", "event_id": ' + "[" * 100_000)
    await expect_client_error(comm, None, "invalid_json", None)
    await still_usable(comm, "echo")
    await comm.disconnect()


async def test_only_a_string_event_id_is_echoed(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    deep = "[" * 500 + "]" * 500  # parses, but is no event id
    await comm.send_to(text_data='{"type": "nope", "event_id": ' + deep + "}")
    await expect_client_error(comm, "type", "invalid_value", None)
    await comm.send_to(text_data='{"type": ' + deep + ', "event_id": "evt_deep"}')
    await expect_client_error(comm, "type", "invalid_type", "evt_deep")
    await still_usable(comm, "shimmer")
    await comm.disconnect()


async def test_an_unexpected_failure_is_a_server_error_event_and_the_socket_lives(
    api_key, monkeypatch, caplog
):
    comm, _ = await rt.open_session(api_key.raw)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    # The standard library failing under us (here: decoding a frame), not a client mistake.
    monkeypatch.setattr(pybase64, "b64decode", out_of_memory)
    with caplog.at_level(logging.ERROR, logger="gateway.realtime.consumer"):
        await rt.send(comm, type="input_audio_buffer.append", audio="AAAA", event_id="evt_oom")
        event = await rt.receive(comm)
    assert event["type"] == "error"
    assert event["error"]["type"] == "server_error"
    assert event["error"]["event_id"] == "evt_oom"
    assert "input_audio_buffer.append" in caplog.text
    monkeypatch.undo()
    await still_usable(comm, "fable")
    await comm.disconnect()


# --- through the official SDK, live --------------------------------------------------------


def test_the_sdk_gets_error_events_and_keeps_its_connection(openai_client):
    from openai.types.realtime import RealtimeErrorEvent, SessionUpdatedEvent

    with openai_client.realtime.connect(model="local/audio-chat") as connection:
        assert connection.recv().type == "session.created"
        connection.send({"type": "session.update", "session": {"audio": {"output": "x"}}})
        error = connection.recv()
        assert isinstance(error, RealtimeErrorEvent)
        assert error.error.type == "invalid_request_error"
        assert error.error.param == "session.audio.output"
        connection.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": "coral"}}}
        )
        updated = connection.recv()
        assert isinstance(updated, SessionUpdatedEvent)
        assert updated.session.audio.output.voice == "coral"


def test_a_raw_client_survives_a_deep_event_on_a_live_server(arouter_server, live_key):
    from websockets.sync.client import connect

    url = arouter_server.url.replace("http", "ws") + "/v1/realtime?model=local/audio-chat"
    headers = {"Authorization": f"Bearer {live_key.raw}"}
    with connect(url, additional_headers=headers, open_timeout=rt.TIMEOUT) as socket:
        assert '"session.created"' in socket.recv(timeout=rt.TIMEOUT)
        socket.send("[" * 100_000)
        assert '"invalid_json"' in socket.recv(timeout=rt.TIMEOUT)
        socket.send('{"type": "input_audio_buffer.clear"}')
        assert '"input_audio_buffer.cleared"' in socket.recv(timeout=rt.TIMEOUT)
