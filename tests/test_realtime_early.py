"""Replying early (gateway.realtime.early), on the real cascade: the reply started in the
speaker's final pause is the one the turn gets when it ends, only if the turn and the
conversation are as it read them; otherwise it is stopped and the turn gets its own."""

import asyncio

import pytest

from gateway.lifecycle import MeteredCall
from gateway.realtime.items import user_audio_item
from gateway.realtime.session import Session
from gateway.realtime.turns import Conversation, voice_chat_model
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engines]

QUESTION = "What is the capital of France?"


@pytest.fixture
def conversation() -> Conversation:
    entry, provider = voice_chat_model("local/audio-chat")
    sent: list[tuple[str, dict]] = []

    async def send(type: str, **fields) -> None:
        sent.append((type, fields))

    talk = Conversation(entry, provider, send)
    talk.sent = sent
    return talk


@pytest.fixture
def session(conversation) -> Session:
    opened = Session.opened(conversation.entry.id)
    voices = conversation.provider.voices()
    return opened.updated({"max_output_tokens": 12}, (conversation.entry.id,), voices)


def call_for(api_key, conversation: Conversation) -> MeteredCall:
    return MeteredCall(api_key.api_key, conversation.entry, "/v1/realtime", "req_early")


async def test_the_turn_gets_the_reply_started_in_its_pause(api_key, conversation, session):
    conversation.reply_early("item_1", QUESTION, session)
    early = conversation.early
    conversation.items.add(user_audio_item("item_1", QUESTION, b""))
    plan = conversation.plan(None, session)
    response = await conversation.respond(plan, call_for(api_key, conversation))
    assert response.reply is early.reply
    assert conversation.early is None
    await response.task
    (done,) = [fields for kind, fields in conversation.sent if kind == "response.done"]
    assert done["response"]["status"] in ("completed", "incomplete")
    spoken = "".join(
        fields["delta"]
        for kind, fields in conversation.sent
        if kind == "response.output_audio_transcript.delta"
    )
    assert spoken
    assert spoken == early.reply.text
    assert any(kind == "response.output_audio.delta" for kind, _ in conversation.sent)
    # Billed once, as the response it became.
    (row,) = [row async for row in UsageRecord.objects.filter(api_key=api_key.api_key)]
    assert row.status_code == 200
    assert row.text_tokens_out > 0


async def test_a_turn_that_went_on_gets_its_own_reply(api_key, conversation, session):
    conversation.reply_early("item_1", "What is the capital", session)
    early = conversation.early
    conversation.items.add(user_audio_item("item_1", QUESTION, b""))
    plan = conversation.plan(None, session)
    response = await conversation.respond(plan, call_for(api_key, conversation))
    assert response.reply is not early.reply
    assert response.reply.job.messages[-1].text == QUESTION
    await response.task
    assert early._pump.done()  # stopped, not left writing
    # Only the response the client got is billed.
    rows = [row async for row in UsageRecord.objects.filter(api_key=api_key.api_key)]
    assert len(rows) == 1


async def test_a_changed_session_voice_is_not_answered_by_the_early_reply(
    api_key, conversation, session
):
    conversation.reply_early("item_1", QUESTION, session)
    early = conversation.early
    conversation.items.add(user_audio_item("item_1", QUESTION, b""))
    voices = conversation.provider.voices()
    other = next(voice for voice in voices if voice != early.reply.voice)
    changed = session.updated({"audio": {"output": {"voice": other}}}, (), voices)
    response = await conversation.respond(
        conversation.plan(None, changed), call_for(api_key, conversation)
    )
    assert response.reply is not early.reply
    assert response.reply.voice == other
    await response.task


async def test_dropping_the_early_reply_stops_it(conversation, session):
    conversation.reply_early("item_1", QUESTION, session)
    early = conversation.early
    conversation.drop_early()
    assert conversation.early is None
    await asyncio.gather(early._pump, return_exceptions=True)
    assert early._pump.cancelled() or early._pump.done()
