"""Server VAD on the realtime socket: turns found in streamed speech, answered, interrupted.

Real speech (Piper) is streamed as the client would, with silence around it; the socket's
events and positions are checked against where the speech really is.
"""

import base64

import numpy as np
import pytest

from tests import test_realtime as rt
from tests.chat_speech import spoken_pcm, word_error_rate
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engines]

RATE = 24_000
QUESTION = "What is the capital of France?"
SECOND = "Tell me a story about a big green dragon."


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def speech_span_ms(pcm: np.ndarray, offset_ms: int) -> tuple[int, int]:
    """Where the clip's voice really starts and ends (10 ms frames above a floor)."""
    frames = pcm[: len(pcm) // 240 * 240].reshape(-1, 240).astype(np.float32)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
    return offset_ms + int(loud[0]) * 10, offset_ms + int(loud[-1] + 1) * 10


async def stream(comm, pcm: np.ndarray) -> None:
    for frame in rt.pcm16_frames(pcm, frame_ms=100):
        await rt.send(comm, type="input_audio_buffer.append", audio=frame)


async def vad_session(key: str, **turn_detection):
    comm, created = await rt.open_session(key, push_to_talk=False)
    detection = created["session"]["audio"]["input"]["turn_detection"]
    assert detection["type"] == "server_vad"  # OpenAI's default
    if turn_detection:
        update = {"audio": {"input": {"turn_detection": {**detection, **turn_detection}}}}
        await rt.send(comm, type="session.update", session=update)
        assert (await rt.receive(comm))["type"] == "session.updated"
    return comm


async def test_a_spoken_turn_is_found_committed_transcribed_and_answered(api_key):
    question = await spoken_pcm(QUESTION)
    start_ms, end_ms = speech_span_ms(question, 600)
    comm = await vad_session(api_key.raw)
    await stream(comm, np.concatenate([silence(600), question, silence(1500)]))
    events = await rt.receive_until(comm, "response.done")
    kinds = [event["type"] for event in events]
    started = events[kinds.index("input_audio_buffer.speech_started")]
    stopped = events[kinds.index("input_audio_buffer.speech_stopped")]
    committed = events[kinds.index("input_audio_buffer.committed")]
    # OpenAI's positions: the prefix padding before the speech, the silence after it.
    assert abs(started["audio_start_ms"] - (start_ms - 300)) <= 150, (started, start_ms)
    assert abs(stopped["audio_end_ms"] - (end_ms + 500)) <= 250, (stopped, end_ms)
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index(
        "input_audio_buffer.committed"
    )
    completed = events[kinds.index("conversation.item.input_audio_transcription.completed")]
    assert word_error_rate(QUESTION, completed["transcript"]) <= 0.25
    deltas = [e["delta"] for e in events if e["type"].endswith("input_audio_transcription.delta")]
    assert "".join(deltas).strip() == completed["transcript"]
    # Answered without a response.create: create_response is on by default.
    assert kinds.index("conversation.item.done") < kinds.index("response.created")
    assert "response.output_audio.delta" in kinds
    assert events[-1]["response"]["status"] in ("completed", "incomplete")
    rows = [row async for row in UsageRecord.objects.order_by("pk")]
    assert len(rows) == 2
    assert all(row.cost > 0 for row in rows)
    await comm.disconnect()


async def test_without_create_response_a_turn_is_only_committed(api_key):
    comm = await vad_session(api_key.raw, create_response=False)
    await stream(comm, np.concatenate([silence(300), await spoken_pcm(QUESTION), silence(1200)]))
    events = await rt.receive_until(comm, "conversation.item.done")
    assert "response.created" not in {event["type"] for event in events}
    await rt.send(
        comm,
        type="response.create",
        response={"output_modalities": ["text"], "max_output_tokens": 4},
    )
    assert (await rt.receive_until(comm, "response.done"))[-1]["type"] == "response.done"
    await comm.disconnect()


async def test_silence_and_noise_are_no_turn(api_key):
    comm = await vad_session(api_key.raw)
    noise = (np.random.default_rng(0).normal(0, 40, RATE * 2)).astype(np.int16)
    await stream(comm, np.concatenate([silence(1000), noise]))
    await rt.send(comm, type="input_audio_buffer.clear")
    assert (await rt.receive(comm))["type"] == "input_audio_buffer.cleared"  # nothing before
    await comm.disconnect()
    assert await UsageRecord.objects.acount() == 0


async def test_speaking_over_a_reply_cancels_it_and_bills_what_was_made(api_key):
    comm = await vad_session(api_key.raw)
    await rt.send(comm, type="session.update", session={"max_output_tokens": 80})
    await rt.receive(comm)
    await stream(comm, np.concatenate([silence(300), await spoken_pcm(SECOND), silence(900)]))
    events = await rt.receive_until(comm, "response.output_audio.delta")
    response_id = events[-1]["response_id"]
    # The user speaks over the reply.
    await stream(comm, np.concatenate([await spoken_pcm(QUESTION), silence(1200)]))
    events = await rt.receive_until(comm, "response.done")
    kinds = [event["type"] for event in events]
    assert "input_audio_buffer.speech_started" in kinds
    assert kinds.index("response.output_audio.done") < len(kinds) - 1
    done = events[-1]["response"]
    assert done["id"] == response_id
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    assert done["output"][0]["status"] == "incomplete"
    # The interrupting turn is heard and answered in its turn.
    events = await rt.receive_until(comm, "response.done")
    completed = [e for e in events if e["type"].endswith("input_audio_transcription.completed")]
    assert word_error_rate(QUESTION, completed[0]["transcript"]) <= 0.25
    assert events[-1]["response"]["id"] != response_id
    await comm.disconnect()
    cancelled = await UsageRecord.objects.filter(audio_tokens_in=0).order_by("pk").afirst()
    assert cancelled.cost > 0  # what it generated before the barge-in
    assert cancelled.text_tokens_out < 80


async def test_idle_timeout_prompts_a_response(api_key):
    comm = await vad_session(api_key.raw, idle_timeout_ms=5000)
    await rt.send(comm, type="session.update", session={"max_output_tokens": 6})
    await rt.receive(comm)
    await stream(comm, np.concatenate([silence(300), await spoken_pcm(QUESTION), silence(900)]))
    await rt.receive_until(comm, "response.done")
    await stream(comm, silence(6000))
    events = await rt.receive_until(comm, "input_audio_buffer.timeout_triggered")
    triggered = events[-1]
    assert triggered["audio_end_ms"] - triggered["audio_start_ms"] >= 5000
    assert (await rt.receive_until(comm, "response.done"))[-1]["type"] == "response.done"
    await comm.disconnect()


async def test_g711_in_and_out(api_key):
    from gateway.audio.g711 import G711Decoder, encode_g711

    pcm = np.concatenate([silence(300), await spoken_pcm(QUESTION), silence(1200)])
    ulaw = encode_g711(pcm.astype("<i2").tobytes(), "ulaw")
    comm = await vad_session(api_key.raw)
    formats = {
        "input": {"format": {"type": "audio/pcmu"}},
        "output": {"format": {"type": "audio/pcmu"}},
    }
    await rt.send(comm, type="session.update", session={"audio": formats, "max_output_tokens": 16})
    updated = await rt.receive(comm)
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    for start in range(0, len(ulaw), 800):  # 100 ms at 8 kHz
        chunk = base64.b64encode(ulaw[start : start + 800]).decode()
        await rt.send(comm, type="input_audio_buffer.append", audio=chunk)
    events = await rt.receive_until(comm, "response.done")
    completed = [e for e in events if e["type"].endswith("input_audio_transcription.completed")]
    assert word_error_rate(QUESTION, completed[0]["transcript"]) <= 0.25
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    decoder = G711Decoder("ulaw")  # 8 kHz bytes, decoded to 24 kHz pcm16
    spoken = decoder.decode(audio) + decoder.flush()
    assert len(spoken) == len(audio) * 6
    # Speech, not noise: loud enough, and Whisper hears words in it.
    samples = np.frombuffer(spoken, dtype="<i2").astype(np.float32)
    assert np.sqrt((samples**2).mean()) > 300
    assert len((await rt.transcribe_pcm16(spoken)).split()) >= 2
    assert events[-1]["response"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    await comm.disconnect()


async def test_a_transcription_session_transcribes_each_turn_and_bills_seconds(api_key):
    comm, created = await rt.open_session(
        api_key.raw, "/v1/realtime?intent=transcription", push_to_talk=False
    )
    session = created["session"]
    assert session["type"] == "transcription"
    assert session["audio"]["input"]["transcription"]["model"]
    update = {
        "type": "transcription",
        "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
    }
    await rt.send(comm, type="session.update", session=update)
    assert (await rt.receive(comm))["session"]["audio"]["input"]["transcription"][
        "language"
    ] == "en"
    await stream(
        comm,
        np.concatenate(
            [
                silence(300),
                await spoken_pcm(QUESTION),
                silence(1200),
                await spoken_pcm(SECOND),
                silence(1200),
            ]
        ),
    )
    transcripts = []
    for _ in range(2):
        events = await rt.receive_until(
            comm, "conversation.item.input_audio_transcription.completed"
        )
        assert "response.created" not in {event["type"] for event in events}
        transcripts.append(events[-1])
    assert word_error_rate(QUESTION, transcripts[0]["transcript"]) <= 0.25
    assert word_error_rate(SECOND, transcripts[1]["transcript"]) <= 0.25
    usage = transcripts[0]["usage"]
    assert usage["type"] == "duration"
    assert usage["seconds"] > 1
    await rt.send(comm, type="response.create")
    assert (await rt.receive(comm))["type"] == "error"
    await comm.disconnect()
    rows = [row async for row in UsageRecord.objects.order_by("pk")]
    assert [row.model for row in rows] == ["whisper-1", "whisper-1"]
    assert rows[0].audio_seconds_in == pytest.approx(usage["seconds"], abs=0.01)
    # Whisper's price per audio minute, for the seconds heard.
    assert float(rows[0].cost) == pytest.approx(usage["seconds"] / 60 * 0.006, rel=0.02)
