"""Realtime conversation items and per-response options (push-to-talk, real engines).

conversation.item.create / delete / retrieve / truncate, and response.create with its own
instructions, output_modalities, max_output_tokens, metadata and `conversation: "none"`.
"""

import base64

import pytest

from tests import test_realtime as rt
from tests.chat_speech import spoken_pcm, word_error_rate
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engines]


def user_text(text: str, **fields) -> dict:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
        **fields,
    }


async def create_item(comm, item: dict, **fields) -> dict:
    """conversation.item.create, answered with .added then .done (the item returned)."""
    await rt.send(comm, type="conversation.item.create", item=item, **fields)
    added = await rt.receive(comm)
    assert added["type"] == "conversation.item.added", added
    done = await rt.receive(comm)
    assert done["type"] == "conversation.item.done"
    assert done["item"]["id"] == added["item"]["id"]
    return added


async def expect_error(comm, code: str) -> dict:
    event = await rt.receive(comm)
    assert event["type"] == "error", event
    assert event["error"]["code"] == code, event
    return event


async def test_items_are_created_in_order_retrieved_and_deleted(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    first = await create_item(comm, user_text("Hello there."))
    assert first["previous_item_id"] is None
    assert first["item"]["content"] == [{"type": "input_text", "text": "Hello there."}]
    second = await create_item(comm, user_text("Second.", id="item_mine"))
    assert second["item"]["id"] == "item_mine"
    assert second["previous_item_id"] == first["item"]["id"]
    root = await create_item(comm, user_text("Before all."), previous_item_id="root")
    assert root["previous_item_id"] is None

    await rt.send(comm, type="conversation.item.retrieve", item_id="item_mine")
    retrieved = await rt.receive(comm)
    assert retrieved["type"] == "conversation.item.retrieved"
    assert retrieved["item"]["content"][0]["text"] == "Second."

    await rt.send(comm, type="conversation.item.delete", item_id="item_mine")
    deleted = await rt.receive(comm)
    assert deleted == {**deleted, "type": "conversation.item.deleted", "item_id": "item_mine"}
    await rt.send(comm, type="conversation.item.retrieve", item_id="item_mine")
    await expect_error(comm, "item_not_found")
    await rt.send(
        comm, type="conversation.item.create", item=user_text("x"), previous_item_id="nope"
    )
    await expect_error(comm, "item_not_found")
    await rt.send(
        comm, type="conversation.item.create", item=user_text("x", id=first["item"]["id"])
    )
    await expect_error(comm, "item_id_exists")
    await rt.send(comm, type="conversation.item.create", item={"type": "function_call"})
    await expect_error(comm, "invalid_value")
    await create_item(comm, user_text("Still usable."))
    await comm.disconnect()
    assert await UsageRecord.objects.acount() == 0  # text items are not billed on their own


async def test_a_text_only_response_with_its_own_instructions_and_limit(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await create_item(comm, user_text("What is the capital of France?"))
    options = {
        "output_modalities": ["text"],
        "instructions": "Answer in one word.",
        "max_output_tokens": 3,
    }
    await rt.send(comm, type="response.create", response=options)
    events = await rt.receive_until(comm, "response.done")
    kinds = {event["type"] for event in events}
    assert "response.output_text.delta" in kinds
    assert not kinds & {"response.output_audio.delta", "response.output_audio_transcript.delta"}
    done = events[-1]["response"]
    assert done["output_modalities"] == ["text"]
    assert done["max_output_tokens"] == 3
    assert done["usage"]["output_token_details"]["text_tokens"] <= 3
    assert done["usage"]["output_token_details"]["audio_tokens"] == 0
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    if done["status"] == "incomplete":
        assert done["status_details"]["reason"] == "max_output_tokens"
    assert "conversation.item.added" in kinds  # in the conversation: its item is added
    await comm.disconnect()


async def test_an_out_of_band_response_reads_its_own_input_and_stays_out(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await create_item(comm, user_text("Remember the word banana."))
    options = {
        "conversation": "none",
        "output_modalities": ["text"],
        "max_output_tokens": 8,
        "metadata": {"purpose": "classifier"},
        "input": [user_text("Say yes.")],
    }
    await rt.send(comm, type="response.create", response=options)
    events = await rt.receive_until(comm, "response.done")
    done = events[-1]["response"]
    assert done["conversation_id"] is None
    assert done["metadata"] == {"purpose": "classifier"}
    assert "conversation.item.added" not in {event["type"] for event in events}
    await rt.send(comm, type="conversation.item.retrieve", item_id=done["output"][0]["id"])
    await expect_error(comm, "item_not_found")  # not part of the conversation
    await rt.send(comm, type="response.create", response={"conversation": "elsewhere"})
    await expect_error(comm, "invalid_value")
    await comm.disconnect()


async def test_a_spoken_reply_is_truncated_to_what_was_played(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await create_item(comm, user_text("Tell me about the sea and the sky in three sentences."))
    await rt.send(comm, type="response.create", response={"max_output_tokens": 60})
    events = await rt.receive_until(comm, "response.done")
    done = events[-1]["response"]
    item = done["output"][0]
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    audio_ms = len(audio) * 1000 // 48_000
    full = item["content"][0]["transcript"]
    await rt.send(
        comm,
        type="conversation.item.truncate",
        item_id=item["id"],
        content_index=0,
        audio_end_ms=audio_ms + 1000,
    )
    await expect_error(comm, "invalid_value")  # longer than the audio
    await rt.send(
        comm,
        type="conversation.item.truncate",
        item_id=item["id"],
        content_index=0,
        audio_end_ms=audio_ms // 3,
    )
    truncated = await rt.receive(comm)
    assert truncated["type"] == "conversation.item.truncated"
    assert truncated["audio_end_ms"] == audio_ms // 3
    await rt.send(comm, type="conversation.item.retrieve", item_id=item["id"])
    kept = (await rt.receive(comm))["item"]["content"][0]
    assert len(kept["transcript"]) < len(full)
    assert full.startswith(kept["transcript"].split(" ")[0])
    assert len(base64.b64decode(kept["audio"])) == audio_ms // 3 * 48
    await comm.disconnect()


async def test_an_audio_item_is_heard_and_billed_as_heard_audio(api_key):
    question = "What is the capital of France?"
    pcm = (await spoken_pcm(question)).astype("<i2").tobytes()
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_audio", "audio": base64.b64encode(pcm).decode()}],
    }
    comm, _ = await rt.open_session(api_key.raw)
    added = await create_item(comm, item)
    transcript = added["item"]["content"][0]["transcript"]
    assert word_error_rate(question, transcript) <= 0.25
    row = await UsageRecord.objects.aget()
    assert row.audio_seconds_in == pytest.approx(len(pcm) / 48_000, abs=0.01)
    assert row.cost > 0
    await rt.send(comm, type="conversation.item.retrieve", item_id=added["item"]["id"])
    retrieved = (await rt.receive(comm))["item"]["content"][0]
    assert base64.b64decode(retrieved["audio"]) == pcm
    await comm.disconnect()
