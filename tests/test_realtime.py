"""The realtime websocket consumer, through Channels' WebsocketCommunicator and the real ASGI app.

Full turns run the real engines (Whisper hears, Gemma 270M — a tiny base model whose
replies are not meaningful — answers, Piper speaks), so they are marked `engines`.
"""

import base64
import json

import numpy as np
import pytest
from channels.testing.websocket import WebsocketCommunicator  # (the package imports daphne)

from arouter.asgi import application
from tests.chat_speech import heard_error_rate, spoken_pcm, word_error_rate
from usage.models import INTERRUPTED, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/v1/realtime?model=local/audio-chat"
TIMEOUT = 120  # seconds per receive: the first turn loads three models on 2 cores


def communicator(path: str = PATH, *, key: str | None = None, headers=(), subprotocols=None):
    headers = list(headers)
    if key:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    return WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)


async def receive(comm) -> dict:
    return json.loads(await comm.receive_from(timeout=TIMEOUT))


async def receive_until(comm, kind: str) -> list[dict]:
    events = []
    while True:
        event = await receive(comm)
        events.append(event)
        if event["type"] == kind:
            return events


async def open_session(key: str, path: str = PATH, *, push_to_talk: bool = True):
    """A connected session; push-to-talk (`turn_detection: null`) unless asked otherwise,
    so the test commits its turns itself."""
    comm = communicator(path, key=key)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    created = await receive(comm)
    assert created["type"] == "session.created"
    if push_to_talk:
        await send(
            comm, type="session.update", session={"audio": {"input": {"turn_detection": None}}}
        )
        assert (await receive(comm))["type"] == "session.updated"
    return comm, created


async def send(comm, **event) -> None:
    await comm.send_to(text_data=json.dumps(event))


async def expect_closed_after_error(comm, code: str | None = None) -> dict:
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected  # accepted so the error event can be delivered
    event = await receive(comm)
    assert event["type"] == "error"
    if code:
        assert event["error"]["code"] == code
    closed = await comm.receive_output(timeout=TIMEOUT)
    assert closed == {"type": "websocket.close", "code": 1008}
    return event


# --- authentication ----------------------------------------------------------------------


async def test_no_credentials_error_then_policy_close():
    await expect_closed_after_error(communicator(), code="invalid_api_key")


async def test_wrong_key_error_then_policy_close():
    await expect_closed_after_error(communicator(key="lr_live_" + "x" * 40), "invalid_api_key")


async def test_key_in_browser_subprotocol_is_accepted(api_key):
    comm = communicator(subprotocols=["realtime", f"openai-insecure-api-key.{api_key.raw}"])
    connected, subprotocol = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert subprotocol == "realtime"
    assert (await receive(comm))["type"] == "session.created"
    await comm.disconnect()


async def test_session_user_bills_a_key_of_their_team(api_key, owner, outsider_key):
    from asgiref.sync import sync_to_async
    from django.test import Client

    client = Client()
    await sync_to_async(client.force_login)(owner)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    # A page of this server: its Origin is the Host the browser connects to.
    origin = (b"origin", b"http://127.0.0.1:8000")
    host = (b"host", b"127.0.0.1:8000")

    ok = communicator(
        f"{PATH}&key_id={api_key.api_key.pk}", headers=[(b"cookie", cookie), origin, host]
    )
    connected, _ = await ok.connect(timeout=TIMEOUT)
    assert connected
    assert (await receive(ok))["type"] == "session.created"
    await ok.disconnect()

    # Another team's key, no key at all, or a foreign page using the cookie: refused.
    foreign = f"{PATH}&key_id={outsider_key.api_key.pk}"
    own = [(b"cookie", cookie), origin, host]
    await expect_closed_after_error(communicator(foreign, headers=own))
    await expect_closed_after_error(communicator(PATH, headers=own))
    evil = [(b"cookie", cookie), (b"origin", b"https://evil.example"), host]
    event = await expect_closed_after_error(
        communicator(f"{PATH}&key_id={api_key.api_key.pk}", headers=evil)
    )
    assert event["error"]["code"] == "invalid_origin"


async def test_model_must_hear_and_speak(api_key):
    await expect_closed_after_error(
        communicator("/v1/realtime?model=local/gemma-3-270m", key=api_key.raw), "unsupported_value"
    )


# --- bad events keep the socket open -----------------------------------------------------


async def test_bad_events_get_error_events_and_the_socket_stays_open(api_key):
    comm, _ = await open_session(api_key.raw)
    await comm.send_to(text_data="{not json")
    assert (await receive(comm))["error"]["code"] == "invalid_json"
    await send(comm, type="conversation.frobnicate", event_id="evt_1")
    error = (await receive(comm))["error"]
    assert error["param"] == "type"
    assert error["event_id"] == "evt_1"
    await send(comm, type="input_audio_buffer.append", audio="***")
    assert (await receive(comm))["error"]["param"] == "audio"
    await send(comm, type="input_audio_buffer.append", audio=base64.b64encode(b"\0").decode())
    assert (await receive(comm))["error"]["param"] == "audio"  # half a sample
    await send(comm, type="input_audio_buffer.commit")
    assert (await receive(comm))["error"]["code"] == "input_audio_buffer_commit_empty"
    await send(comm, type="response.create")
    assert (await receive(comm))["error"]["code"] == "conversation_empty"
    await send(comm, type="response.cancel")
    assert (await receive(comm))["error"]["code"] == "response_cancel_not_active"
    await send(comm, type="session.update", session={"audio": {"output": {"voice": "nobody"}}})
    assert (await receive(comm))["error"]["param"] == "session.audio.output.voice"
    await send(comm, type="session.update", session={"max_output_tokens": 0})
    assert (await receive(comm))["error"]["param"] == "session.max_output_tokens"
    await send(comm, type="response.create", response={"max_output_tokens": "lots"})
    assert (await receive(comm))["error"]["param"] == "response.max_output_tokens"
    await comm.send_to(bytes_data=b"\x00\x01")
    assert (await receive(comm))["error"]["code"] == "invalid_event"

    # Still open and working.
    await send(
        comm,
        type="session.update",
        session={"instructions": "Be brief.", "audio": {"output": {"voice": "nova"}}},
    )
    updated = await receive(comm)
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"]["output"]["voice"] == "nova"
    assert updated["session"]["instructions"] == "Be brief."
    await send(
        comm, type="input_audio_buffer.append", audio=base64.b64encode(b"\0" * 9600).decode()
    )
    await send(comm, type="input_audio_buffer.clear")
    assert (await receive(comm))["type"] == "input_audio_buffer.cleared"
    await send(comm, type="input_audio_buffer.commit")
    assert (await receive(comm))["error"]["code"] == "input_audio_buffer_commit_empty"
    await comm.disconnect()
    assert await UsageRecord.objects.acount() == 0


# --- full turns (real engines) -----------------------------------------------------------


async def transcribe_pcm16(pcm: bytes) -> str:
    from gateway.catalog import catalog
    from gateway.providers import provider_for
    from gateway.providers.base import AudioUpload, TranscriptionJob
    from gateway.realtime.audio_buffer import as_wav

    whisper = provider_for(catalog().get("local/whisper-base"))
    job = TranscriptionJob(upload=AudioUpload(content=as_wav(pcm), filename="reply.wav"))
    return (await whisper.transcribe(job)).text


def pcm16_frames(pcm: np.ndarray, frame_ms: int = 100) -> list[str]:
    step = 24_000 * frame_ms // 1000
    return [
        base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode()
        for i in range(0, len(pcm), step)
    ]


@pytest.mark.engines
async def test_full_turn_from_pcm16_frames_to_audio_and_usage(api_key):
    question = "What is the capital of France?"
    comm, _ = await open_session(api_key.raw)
    # Greedy decoding: a repeatable reply, so hearing it back checks the audio, not luck.
    session = {"audio": {"output": {"voice": "alloy"}}, "max_output_tokens": 24, "temperature": 0}
    await send(comm, type="session.update", session=session)
    assert (await receive(comm))["session"]["max_output_tokens"] == 24
    for frame in pcm16_frames(await spoken_pcm(question)):
        await send(comm, type="input_audio_buffer.append", audio=frame)
    await send(comm, type="input_audio_buffer.commit")
    committed = await receive(comm)
    assert committed["type"] == "input_audio_buffer.committed"
    added = await receive(comm)
    assert added["type"] == "conversation.item.added"
    assert added["item"]["id"] == committed["item_id"]
    assert added["item"]["role"] == "user"
    assert added["item"]["content"][0]["transcript"] is None  # being transcribed
    events = await receive_until(comm, "conversation.item.done")
    kinds = [event["type"] for event in events]
    assert kinds[0] == "conversation.item.input_audio_transcription.delta"
    transcribed = events[kinds.index("conversation.item.input_audio_transcription.completed")]
    done_item = events[-1]["item"]
    assert done_item["content"][0]["transcript"] == transcribed["transcript"]
    assert word_error_rate(question, transcribed["transcript"]) <= 0.25
    heard_tokens = transcribed["usage"]["input_token_details"]["audio_tokens"]
    assert heard_tokens > 0  # the audio heard is billed with its commit

    await send(comm, type="response.create")
    events = await receive_until(comm, "response.done")
    kinds = [event["type"] for event in events]
    assert kinds.index("response.created") < kinds.index("response.output_audio.delta")
    assert kinds[-1] == "response.done"
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert len(audio) > 24_000  # more than half a second of pcm16
    heard = await transcribe_pcm16(audio)
    assert heard_error_rate(transcript, heard) <= 0.15, (transcript, heard)
    done = events[-1]["response"]
    assert done["status"] in ("completed", "incomplete")
    assert done["output"][0]["content"][0]["transcript"] == transcript
    usage = done["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 0  # billed with the commit
    assert usage["output_token_details"]["audio_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert 0 < usage["output_token_details"]["text_tokens"] <= 24
    heard_row, reply_row = [r async for r in UsageRecord.objects.order_by("pk")]
    assert {heard_row.endpoint, reply_row.endpoint} == {"/v1/realtime"}
    assert heard_row.audio_tokens_in == heard_tokens
    assert reply_row.audio_tokens_in == 0
    assert reply_row.audio_tokens_out == usage["output_token_details"]["audio_tokens"]
    assert heard_row.cost > 0
    assert reply_row.cost > 0
    await comm.disconnect()


@pytest.mark.engines
async def test_cancel_mid_response_ends_it_and_bills_once(api_key):
    comm, _ = await open_session(api_key.raw)
    for frame in pcm16_frames(await spoken_pcm("Please tell me a long story about the sea.")):
        await send(comm, type="input_audio_buffer.append", audio=frame)
    await send(comm, type="input_audio_buffer.commit")
    await receive_until(comm, "conversation.item.done")
    await send(comm, type="response.create")
    await receive_until(comm, "response.created")
    replies = UsageRecord.objects.filter(audio_tokens_in=0)  # not the commit's row
    # In the ledger from its start, marked interrupted: a worker dying now leaves a trace.
    assert (await replies.aget()).status_code == INTERRUPTED
    await send(comm, type="response.create")  # a second one while the first runs
    await send(comm, type="response.cancel")
    events = await receive_until(comm, "response.done")
    errors = [e for e in events if e["type"] == "error"]
    assert errors
    assert errors[0]["error"]["code"] == "conversation_already_has_active_response"
    assert events[-1]["response"]["status"] == "cancelled"
    assert events[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    assert (await replies.aget()).status_code == 200  # the same row, completed
    await comm.disconnect()
