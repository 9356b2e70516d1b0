"""What realtime turns put in the ledger, with the real engines (marked `engines`).

Each committed buffer is a row of its own as soon as it is heard (the audio at the model's
audio input price), whether or not a response follows; each response is another row that
does not bill that audio again. Turns are admitted (rate, budget) before Whisper runs, and
the key is read again at response.create too.
"""

import math
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import ApiKey
from gateway.catalog import catalog
from gateway.pricing import COST_QUANTUM
from tests import test_realtime as rt
from tests.chat_speech import spoken_pcm
from tests.test_limits import fresh_minute
from tests.test_realtime_access import commit_silence, expect_error_then_close
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engines]

QUESTION = "What is the capital of France?"


async def commit_question(comm, question: str = QUESTION) -> tuple[float, dict]:
    """Commit a spoken question; its seconds and its transcription.completed event."""
    pcm = await spoken_pcm(question)
    for frame in rt.pcm16_frames(pcm):
        await rt.send(comm, type="input_audio_buffer.append", audio=frame)
    await rt.send(comm, type="input_audio_buffer.commit")
    events = await rt.receive_until(comm, "conversation.item.done")
    completed = [e for e in events if e["type"].endswith("input_audio_transcription.completed")]
    return len(pcm) / 24_000, completed[0]


async def test_heard_audio_is_billed_at_commit_once_and_not_again_by_the_response(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await rt.send(comm, type="session.update", session={"max_output_tokens": 8})
    await rt.receive(comm)
    seconds, transcribed = await commit_question(comm)

    # Billed as soon as it is heard, with no response asked for.
    price = catalog().get("local/audio-chat").pricing.per_million_audio_input_tokens
    tokens = math.ceil(seconds * 10)  # the catalog's audio_tokens_per_second
    expected_cost = (tokens * price / 1_000_000).quantize(COST_QUANTUM)
    heard = await UsageRecord.objects.aget()
    assert (heard.endpoint, heard.model, heard.status_code) == (
        "/v1/realtime",
        "local/audio-chat",
        200,
    )
    assert heard.audio_seconds_in == pytest.approx(seconds, abs=0.001)
    assert heard.audio_tokens_in == tokens
    assert heard.cost == expected_cost > 0
    usage = transcribed["usage"]
    assert usage["type"] == "tokens"
    assert usage["input_token_details"] == {"audio_tokens": tokens, "text_tokens": 0}
    assert Decimal(str(usage["cost"])) == expected_cost

    await rt.send(comm, type="response.create")
    done = (await rt.receive_until(comm, "response.done"))[-1]["response"]
    reply = await UsageRecord.objects.exclude(pk=heard.pk).aget()
    # The reply's row bills what it made and the text it read, not the audio again.
    assert (reply.audio_tokens_in, reply.audio_seconds_in) == (0, 0)
    assert reply.audio_tokens_out > 0
    assert done["usage"]["input_token_details"]["audio_tokens"] == 0
    assert Decimal(str(done["usage"]["cost"])) == reply.cost
    await comm.disconnect()


async def test_the_rate_limit_is_admitted_before_whisper_hears(team):
    fresh_minute()  # both commits in one rate window
    issued = await sync_to_async(ApiKey.issue)(team, name="one a minute", requests_per_minute=1)
    comm, _ = await rt.open_session(issued.raw)
    await commit_silence(comm)
    await rt.receive_until(comm, "conversation.item.done")
    await commit_silence(comm, "evt_again")
    event = await rt.receive(comm)
    assert event["type"] == "error", event
    assert event["error"]["type"] == "requests"
    assert event["error"]["code"] == "rate_limit_exceeded"
    assert event["error"]["event_id"] == "evt_again"
    assert await UsageRecord.objects.acount() == 1  # only the commit that was heard
    await comm.disconnect()


async def test_response_create_reads_the_key_again(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await commit_question(comm)
    await ApiKey.objects.filter(pk=api_key.api_key.pk).aupdate(revoked_at=timezone.now())
    await rt.send(comm, type="response.create", event_id="evt_answer")
    error = await expect_error_then_close(comm, "invalid_api_key")
    assert error["event_id"] == "evt_answer"
    assert await UsageRecord.objects.acount() == 1  # the commit; no response was made


async def test_revoking_mid_response_ends_it_and_bills_what_was_made(api_key):
    comm, _ = await rt.open_session(api_key.raw)
    await commit_question(comm, "Please tell me a long story about the sea.")
    await rt.send(comm, type="response.create")
    await rt.receive_until(comm, "response.created")
    await sync_to_async(api_key.api_key.revoke)()
    events = await rt.receive_until(comm, "error")
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["code"] == "invalid_api_key"
    assert events[-1]["error"]["code"] == "invalid_api_key"
    assert await comm.receive_output(timeout=rt.TIMEOUT) == {
        "type": "websocket.close",
        "code": 1008,
    }
    statuses = [r.status_code async for r in UsageRecord.objects.order_by("pk")]
    assert statuses == [200, 200]  # heard, and the reply as far as it went (not interrupted)
