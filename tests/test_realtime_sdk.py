"""The realtime socket with the official `openai` Python SDK as the client, on a live server.

Real speech (Piper) is streamed as a voice client streams it: 100 ms frames on a 100 ms
clock, from a thread beside the one reading events. Every server event is checked as it
arrives (`Checked`): the SDK parses it into the model of its type, that model validates
it, it carries no field the model does not know but our documented extras, and it is
valid under OpenAI's published schema of that event (tests/contract/). Each response's
events are checked against the order OpenAI's protocol gives them.

Full turns run the real engines (Whisper hears, the cascade's text model answers, Piper
speaks), so they are marked `engines`.
"""

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest
from openai._models import BaseModel
from openai.types.realtime import RealtimeServerEvent

from tests import openai_contract
from tests.chat_speech import speak, word_error_rate
from tests.test_realtime import transcribe_pcm16
from usage.models import UsageRecord

pytestmark = pytest.mark.engines

RATE = 24_000
BYTES_PER_MS = RATE * 2 // 1000  # pcm16 mono
FRAME_MS = 100
TIMEOUT = 120  # seconds per event: the first turn loads three models on 2 cores
STORY = "Tell me a long story about a big green dragon who lives in the mountains."
QUESTION = "What is the capital of France?"
SECOND = "How tall is the Eiffel Tower?"

# Fields we send that OpenAI's events do not have: what a response or a heard turn cost.
EXTRAS = ("usage.cost", "response.usage.cost")
# A transcription session describes its server_vad with the conversation's fields
# (create_response, interrupt_response, idle_timeout_ms), which OpenAI's transcription
# session does not have: tolerated here so the other checks run; remove once it does not.
TRANSCRIPTION_VAD_EXTRAS = tuple(
    f"session.audio.input.turn_detection.{name}"
    for name in ("create_response", "interrupt_response", "idle_timeout_ms")
)
# Fields of OpenAI's own session objects (an id, the object's name) that the SDK's
# session models, written for the request, do not declare.
SDK_EXTRAS = ("session.id", "session.object")
# Nulls where OpenAI's published schema says only "string" or "object", which the SDK's
# models allow: a response not yet done has no status_details or usage, a completed one
# no status_details (OpenAI's server sends these as null), an out-of-band response's
# conversation_id is null (the schema's own description says so), an audio item not yet
# transcribed has a null transcript, and a transcription session of no set language
# shows `language: null` (left out, it would match the schema as written).
OPENAI_NULLS = (
    "response.status_details",
    "response.usage",
    "response.conversation_id",
    "item.content.*.transcript",
    "session.audio.input.transcription.language",
)


def _event_schemas() -> dict[str, str]:
    """Each server event type and the name of its schema in OpenAI's document."""
    document = json.loads(openai_contract.DOCUMENT.read_text())["components"]["schemas"]
    schemas = {}
    for branch in document["RealtimeServerEvent"]["anyOf"]:
        name = branch["$ref"].rsplit("/", 1)[1]
        kind = document[name]["properties"]["type"]
        for value in kind.get("enum", [kind.get("const")]):
            schemas[value] = name
    return schemas


EVENT_SCHEMAS = _event_schemas()


def _without_nulls(node, path: list[str]):
    """`node` without the field at `path` where it is null (`*`: every list item)."""
    head, *rest = path
    if isinstance(node, list) and head == "*":
        return [_without_nulls(item, rest) for item in node]
    if not isinstance(node, dict) or head not in node:
        return node
    if not rest:
        return {k: v for k, v in node.items() if not (k == head and v is None)}
    return {**node, head: _without_nulls(node[head], rest)}


def _undeclared(value, path: str = "") -> list[str]:
    """Paths of fields the SDK's models do not declare (pydantic keeps them as extras)."""
    found = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{name}".lstrip(".") for name in value.model_extra or {}]
        for name in type(value).model_fields:
            found += _undeclared(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for item in value:
            found += _undeclared(item, f"{path}.*")
    return found


def check_event(raw: bytes, parsed) -> dict:
    """The checks every server event gets; returns its JSON object."""
    data = json.loads(raw)
    kind = data["type"]
    model = type(parsed)
    # The SDK picks a model by the event's type; an unknown type lands on another model.
    assert model.model_fields["type"].annotation.__args__ == (kind,), (kind, model)
    validated = model.model_validate(data)  # pydantic: every field of the right type
    undeclared = [p for p in _undeclared(validated) if p not in EXTRAS + SDK_EXTRAS]
    assert not undeclared, f"{kind}: fields the SDK does not know: {undeclared}"
    published = data
    for null in OPENAI_NULLS:
        published = _without_nulls(published, null.split("."))
    extras = EXTRAS
    if (data.get("session") or {}).get("type") == "transcription":
        extras += TRANSCRIPTION_VAD_EXTRAS
    openai_contract.assert_matches(EVENT_SCHEMAS[kind], published, extras=extras)
    return data


@dataclass
class Received:
    event: RealtimeServerEvent  # as the SDK parsed it
    data: dict  # the JSON object
    at: float  # time.monotonic() of arrival

    @property
    def type(self) -> str:
        return self.data["type"]


@dataclass
class Checked:
    """An SDK connection whose every event is checked (`check_event`) and kept."""

    connection: object
    events: list[Received] = field(default_factory=list)

    def recv(self) -> Received:
        # The SDK's recv has no timeout: a silent server would hang the test.
        watchdog = threading.Timer(TIMEOUT, self.connection.close)
        watchdog.start()
        try:
            raw = self.connection.recv_bytes()
        finally:
            watchdog.cancel()
        parsed = self.connection.parse_event(raw)
        received = Received(parsed, check_event(raw, parsed), time.monotonic())
        self.events.append(received)
        return received

    def until(self, kind: str, response_id: str | None = None) -> list[Received]:
        """Events up to and with the next `kind` (of that response, if given)."""
        got = []
        while True:
            got.append(self.recv())
            data = got[-1].data
            if data["type"] == kind and response_id in (None, _response_of(data)):
                return got

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.events if r.type == kind]


@contextmanager
def checked_session(client, **connect) -> Iterator[Checked]:
    with client.realtime.connect(**connect) as connection:
        session = Checked(connection)
        assert session.recv().type == "session.created"
        yield session


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def speech_span_ms(pcm: np.ndarray, offset_ms: int) -> tuple[int, int]:
    """Where the clip's voice really starts and ends (10 ms frames above a floor)."""
    frames = pcm[: len(pcm) // 240 * 240].reshape(-1, 240).astype(np.float32)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
    return offset_ms + int(loud[0]) * 10, offset_ms + int(loud[-1] + 1) * 10


def stream(connection, pcm: np.ndarray) -> threading.Thread:
    """Send `pcm` as 100 ms appends on a 100 ms clock, from a thread of its own."""
    step = RATE * FRAME_MS // 1000
    frames = [
        base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode()
        for i in range(0, len(pcm), step)
    ]

    def paced() -> None:
        start = time.monotonic()
        for index, frame in enumerate(frames):
            time.sleep(max(0.0, start + index * FRAME_MS / 1000 - time.monotonic()))
            connection.input_audio_buffer.append(audio=frame)

    sender = threading.Thread(target=paced, daemon=True)
    sender.start()
    return sender


def audio_of(events: list[Received], response_id: str) -> bytes:
    return b"".join(
        base64.b64decode(r.data["delta"])
        for r in events
        if r.type == "response.output_audio.delta" and r.data["response_id"] == response_id
    )


def transcript_deltas(events: list[Received], response_id: str) -> str:
    return "".join(
        r.data["delta"]
        for r in events
        if r.type in ("response.output_audio_transcript.delta", "response.output_text.delta")
        and r.data["response_id"] == response_id
    )


def heard(pcm: bytes) -> str:
    """What the gateway's Whisper hears in audio the server sent."""
    return asyncio.run(transcribe_pcm16(pcm))


# --- the order of a response's events ---------------------------------------------------

_OPENING = ("response.output_item.added", "response.content_part.added")
_CLOSING = {
    "audio": (
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
    ),
    "text": (
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ),
}
_DELTAS = {
    "audio": {"response.output_audio.delta", "response.output_audio_transcript.delta"},
    "text": {"response.output_text.delta"},
}


def _item_of(data: dict) -> str | None:
    return data.get("item_id") or (data.get("item") or {}).get("id")


def _response_of(data: dict) -> str | None:
    return data.get("response_id") or (data.get("response") or {}).get("id")


def assert_response_sequence(events: list[Received], response_id: str) -> list[dict]:
    """The response's events in OpenAI's order: created; its item and part opened;
    deltas; the content's done events; the item's; response.done last, nothing after.
    The assistant item's conversation.item.added comes before any of its content, its
    conversation.item.done between output_item.done and response.done."""
    everything = [r.data for r in events]
    mine = [d for d in everything if _response_of(d) == response_id]
    kinds = [d["type"] for d in mine]
    modality = mine[-1]["response"]["output_modalities"][0]
    assert kinds[0] == "response.created", kinds[:3]
    assert kinds[-1] == "response.done", kinds[-3:]
    assert kinds[1:3] == list(_OPENING), kinds[:4]
    closing = list(_CLOSING[modality])
    assert kinds[-1 - len(closing) : -1] == closing, kinds[-6:]
    middle = set(kinds[3 : -1 - len(closing)])
    assert middle <= _DELTAS[modality], middle - _DELTAS[modality]
    done_at = everything.index(mine[-1])
    after = [d["type"] for d in everything[done_at + 1 :] if _response_of(d) == response_id]
    assert not after, after
    item_id = mine[1]["item"]["id"]
    if mine[0]["response"]["conversation_id"] is not None:  # in the conversation
        item_events = [
            (i, d["type"])
            for i, d in enumerate(everything)
            if d["type"] in ("conversation.item.added", "conversation.item.done")
            and d["item"]["id"] == item_id
        ]
        assert [kind for _, kind in item_events] == [
            "conversation.item.added",
            "conversation.item.done",
        ], item_events
        first_part = everything.index(mine[2])
        item_done = everything.index(mine[-2])
        assert item_events[0][0] < first_part
        assert item_done < item_events[1][0] < done_at
    return mine


# --- (a) a server VAD turn --------------------------------------------------------------


def test_a_vad_turn_streamed_in_real_time_gives_only_events_the_sdk_knows(openai_client):
    question = speak(QUESTION)
    start_ms, end_ms = speech_span_ms(question, 600)
    with checked_session(openai_client, model="local/audio-chat") as session:
        created = session.events[0].event
        assert created.session.audio.input.turn_detection.type == "server_vad"  # the default
        connection = session.connection
        connection.session.update(session={"type": "realtime", "max_output_tokens": 40})
        assert session.recv().type == "session.updated"
        sender = stream(connection, np.concatenate([silence(600), question, silence(1500)]))
        events = session.until("response.done")
        sender.join()
    kinds = [r.type for r in events]
    turn = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
    ]
    assert kinds[:4] == turn, kinds[:6]
    started, stopped, committed, added = (r.event for r in events[:4])
    assert started.item_id == stopped.item_id == committed.item_id == added.item.id
    # OpenAI's positions: the prefix padding before the speech, the silence after it.
    assert abs(started.audio_start_ms - (start_ms - 300)) <= 150, (started, start_ms)
    assert abs(stopped.audio_end_ms - (end_ms + 500)) <= 250, (stopped, end_ms)
    assert added.item.role == "user"
    transcribed = session.of_type("conversation.item.input_audio_transcription.completed")
    assert [r.event.item_id for r in transcribed] == [committed.item_id]
    assert word_error_rate(QUESTION, transcribed[0].event.transcript) <= 0.25
    user_done = next(r for r in events if r.type == "conversation.item.done").event
    assert user_done.item.content[0].transcript == transcribed[0].event.transcript
    response_id = events[-1].event.response.id
    assert_response_sequence(session.events, response_id)
    assert kinds.index("conversation.item.done") < kinds.index("response.created")
    done = events[-1].event.response
    assert done.status in ("completed", "incomplete")
    audio = audio_of(events, response_id)
    assert len(audio) > RATE  # more than half a second of speech
    assert done.output[0].content[0].transcript == transcript_deltas(events, response_id)


# --- (b) a conversation with an interruption ---------------------------------------------


def test_a_conversation_interrupted_mid_reply_end_to_end(openai_client, live_key):
    limit = 200
    with checked_session(openai_client, model="local/audio-chat") as session:
        connection = session.connection
        connection.session.update(
            session={"type": "realtime", "max_output_tokens": limit, "temperature": 0}
        )
        session.recv()
        # Turn 1: a question whose answer is long enough to be spoken over.
        first_turn = stream(connection, np.concatenate([silence(300), speak(STORY), silence(900)]))
        first_audio = session.until("response.output_audio.delta")[-1].event
        cancelled_id, assistant_item = first_audio.response_id, first_audio.item_id
        # The user speaks over the reply while its audio arrives; what the client
        # "played" is what it had received when the server heard the speech start.
        # One microphone: the reply can begin before the turn's closing silence is all
        # sent, and two senders at once would interleave their frames.
        first_turn.join()
        barge_in = stream(connection, np.concatenate([speak(QUESTION), silence(1200)]))
        before_speech = session.until("input_audio_buffer.speech_started")
        played = audio_of(session.events, cancelled_id)
        played_ms = len(played) // BYTES_PER_MS
        connection.conversation.item.truncate(
            item_id=assistant_item, content_index=0, audio_end_ms=played_ms
        )
        cancelled = session.until("response.done", cancelled_id)
        truncated = session.until("conversation.item.truncated")[-1].event
        connection.conversation.item.retrieve(item_id=assistant_item)
        retrieved = session.until("conversation.item.retrieved")[-1].event
        barge_in.join()
        # Turn 2: the interrupting question, heard and answered.
        second = session.until("response.done")[-1].event
        # A third turn after it: the conversation goes on as usual.
        stream(connection, np.concatenate([silence(300), speak(SECOND), silence(1200)])).join()
        third = session.until("response.done")[-1].event
    events = session.events
    assert before_speech[-1].event.item_id != assistant_item

    # Barge-in: the reply ends cancelled by the turn, its item incomplete.
    done = cancelled[-1].event.response
    assert done.status == "cancelled"
    assert done.status_details.reason == "turn_detected"
    assert done.output[0].status == "incomplete"
    assert_response_sequence(events, cancelled_id)
    full_transcript = done.output[0].content[0].transcript
    generated = audio_of(events, cancelled_id)
    assert played_ms < len(generated) // BYTES_PER_MS or played == generated

    # Truncated to what was played: the transcript of the sentences heard, the audio cut.
    assert (truncated.item_id, truncated.content_index) == (assistant_item, 0)
    assert truncated.audio_end_ms == played_ms
    kept = retrieved.item.content[0]
    assert len(kept.transcript) < len(full_transcript)
    assert full_transcript.startswith(kept.transcript)
    assert base64.b64decode(kept.audio) == played[: played_ms * BYTES_PER_MS]
    # What was played says what the truncated item says.
    assert word_error_rate(kept.transcript, heard(played)) <= 0.4, kept.transcript  # a few words

    # The interrupting turn and the next are heard right and answered in full.
    transcripts = [
        r.event.transcript
        for r in session.of_type("conversation.item.input_audio_transcription.completed")
    ]
    assert len(transcripts) == 3
    assert word_error_rate(QUESTION, transcripts[1]) <= 0.25, transcripts
    assert word_error_rate(SECOND, transcripts[2]) <= 0.25, transcripts
    for response in (second, third):
        assert response.response.status in ("completed", "incomplete")
        assert_response_sequence(events, response.response.id)
        spoken = transcript_deltas(events, response.response.id)
        assert response.response.output[0].content[0].transcript == spoken
        # The audio sent says what the transcript deltas say.
        assert word_error_rate(spoken, heard(audio_of(events, response.response.id))) <= 0.35

    # The ledger: each heard turn and each response, the cancelled one for what it made.
    rows = list(UsageRecord.objects.filter(api_key=live_key.api_key).order_by("pk"))
    heard_rows = [row for row in rows if row.audio_tokens_in > 0]
    response_rows = [row for row in rows if row.audio_tokens_in == 0]
    assert len(heard_rows) == 3
    assert len(response_rows) == 3
    assert all(row.status_code == 200 and row.cost > 0 for row in rows)
    cancelled_row = response_rows[0]  # the responses were billed in order
    usage = done.usage
    assert float(cancelled_row.cost) == pytest.approx(usage.cost, rel=1e-6)
    assert cancelled_row.audio_tokens_out == usage.output_token_details.audio_tokens
    assert cancelled_row.text_tokens_out == usage.output_token_details.text_tokens
    # Only what was generated: the audio sent, and less text than the reply was allowed.
    assert cancelled_row.audio_seconds_out == pytest.approx(len(generated) / (2 * RATE), abs=0.05)
    assert 0 < cancelled_row.text_tokens_out < limit


# --- (c) a transcription session ---------------------------------------------------------


def test_a_transcription_session_streams_deltas_and_completed_turns(openai_client, live_key):
    transcription = {"model": "whisper-1", "language": "en"}
    with checked_session(openai_client, extra_query={"intent": "transcription"}) as session:
        assert session.events[0].event.session.type == "transcription"
        connection = session.connection
        connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "transcription": transcription,
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        updated = session.recv().event
        assert updated.session.audio.input.transcription.language == "en"
        speech = [silence(300), speak(QUESTION), silence(1200), speak(SECOND), silence(1200)]
        sender = stream(connection, np.concatenate(speech))
        for _ in range(2):  # a turn may be committed before the one before is heard
            session.until("conversation.item.input_audio_transcription.completed")
        sender.join()
    assert not [r.type for r in session.events if r.type.startswith("response.")]
    committed = session.of_type("input_audio_buffer.committed")
    assert len(committed) == 2
    completed = []
    for commit, spoken in zip(committed, (QUESTION, SECOND), strict=True):
        item_id = commit.event.item_id
        events = [r for r in session.events if _item_of(r.data) == item_id]
        kinds = [r.type for r in events]
        assert kinds[:3] == [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
        ], kinds
        assert kinds[-1] == "conversation.item.input_audio_transcription.completed", kinds
        # (The turn's item is not shown: no conversation.item.added / done.)
        assert set(kinds[3:-1]) <= {"conversation.item.input_audio_transcription.delta"}, kinds
        deltas = [r.event.delta for r in events if r.type.endswith("transcription.delta")]
        assert deltas  # at least one delta before completed
        done = events[-1].event
        assert "".join(deltas).strip() == done.transcript
        assert word_error_rate(spoken, done.transcript) <= 0.25, done.transcript
        assert done.usage.type == "duration"
        completed.append(done)
    rows = list(UsageRecord.objects.filter(api_key=live_key.api_key).order_by("pk"))
    assert [row.model for row in rows] == ["whisper-1", "whisper-1"]
    for row, done in zip(rows, completed, strict=True):
        assert row.audio_seconds_in == pytest.approx(done.usage.seconds, abs=0.01)
        assert row.cost > 0


# --- (d) an out-of-band text response ----------------------------------------------------


def test_an_out_of_band_text_response_through_the_sdk_helpers(openai_client, live_key):
    with checked_session(openai_client, model="local/audio-chat") as session:
        connection = session.connection
        connection.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        )
        assert session.recv().event.session.audio.input.turn_detection is None
        connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": QUESTION}],
            }
        )
        added = session.until("conversation.item.added")[-1].event
        user_item = added.item.id
        connection.response.create(
            response={
                "conversation": "none",
                "output_modalities": ["text"],
                "instructions": "Answer in one short sentence.",
                "max_output_tokens": 24,
                "metadata": {"purpose": "summary"},
                "input": [{"type": "item_reference", "id": user_item}],
            }
        )
        events = session.until("response.done")
        done = events[-1].event.response
        reply_item = done.output[0].id
        connection.conversation.item.retrieve(item_id=reply_item)
        missing = session.until("error")[-1].event
        connection.conversation.item.retrieve(item_id=user_item)
        kept = session.until("conversation.item.retrieved")[-1].event
    assert added.item.content[0].text == QUESTION
    created = next(r for r in events if r.type == "response.created").event.response
    assert created.conversation_id is None  # out of band
    assert created.metadata == {"purpose": "summary"}
    mine = assert_response_sequence(session.events, done.id)
    assert "conversation.item.added" not in {r.type for r in events[1:]}
    text = transcript_deltas(events, done.id)
    assert text.strip()
    assert mine[-4]["text"] == text  # response.output_text.done
    assert done.output[0].content[0].type == "output_text"
    assert done.output[0].content[0].text == text
    assert done.status in ("completed", "incomplete")
    assert done.metadata == {"purpose": "summary"}
    assert done.usage.output_token_details.audio_tokens == 0
    assert 0 < done.usage.output_token_details.text_tokens <= 24
    # It stayed out of the conversation, which still holds the user's item.
    assert missing.error.code == "item_not_found"
    assert kept.item.id == user_item
    (row,) = UsageRecord.objects.filter(api_key=live_key.api_key)
    assert row.text_tokens_out == done.usage.output_token_details.text_tokens
    assert row.audio_tokens_out == 0
    assert float(row.cost) == pytest.approx(done.usage.cost, rel=1e-6)
