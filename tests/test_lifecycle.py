"""A metered request's life: admitted, run, recorded once however it ends, settled."""

import asyncio
import contextlib
import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connections

from core.errors import OpenAIError, invalid_param
from core.hot_path_db import run_query
from gateway.catalog import catalog
from gateway.lifecycle import MeteredCall
from usage.ledger import INTERRUPTED, Metered
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

SPEECH = "/v1/audio/speech"


def _call(api_key, model: str = "openai/tts-1") -> MeteredCall:
    return MeteredCall(api_key, catalog().get(model), SPEECH, "req_test")


async def _rows(api_key) -> list[UsageRecord]:
    return [row async for row in UsageRecord.objects.filter(api_key=api_key)]


async def test_a_finished_call_is_one_row_with_its_cost(api_key):
    call = _call(api_key.api_key, "openai/whisper-large-v3")
    async with call.running():
        await call.admit(Metered(audio_seconds_in=60))
        call.metered.audio_seconds_in = 60
    (row,) = await _rows(api_key.api_key)
    assert (row.status_code, row.cost, row.request_id) == (200, Decimal("0.006"), "req_test")
    assert (row.team_id, row.model, row.provider) == (
        api_key.api_key.team_id,
        "openai/whisper-large-v3",
        "whisper",
    )


async def test_an_openai_error_is_recorded_at_its_status_at_no_cost(api_key):
    call = _call(api_key.api_key)

    async def refuse() -> None:
        async with call.running():
            await call.admit(Metered(characters=500))
            call.metered.characters = 500
            raise invalid_param("no such voice", param="voice")

    with pytest.raises(OpenAIError):
        await refuse()
    (row,) = await _rows(api_key.api_key)
    assert (row.status_code, row.cost, row.characters) == (400, 0, 500)


async def test_a_crash_is_a_500_row(api_key):
    call = _call(api_key.api_key)

    async def crash() -> None:
        async with call.running():
            await call.admit(Metered(characters=5))
            raise RuntimeError("engine broke")

    with pytest.raises(RuntimeError):
        await crash()
    (row,) = await _rows(api_key.api_key)
    assert row.status_code == 500


async def test_a_client_that_leaves_pays_for_what_was_measured(api_key):
    call = _call(api_key.api_key)

    async def measure() -> None:
        call.metered.characters = 1000

    async def answer() -> None:
        async with call.running():
            await call.admit(Metered(characters=4000))
            call.measure = measure
            await asyncio.sleep(30)

    task = asyncio.ensure_future(answer())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (row,) = await _rows(api_key.api_key)
    assert (row.status_code, row.characters) == (200, 1000)
    assert row.cost == call.cost > 0


async def test_finishing_again_bills_nothing_more(api_key):
    call = _call(api_key.api_key)
    await call.admit(Metered(characters=500))
    call.metered.characters = 500
    first = await call.finish(200)
    again = await call.finish(500)  # an error path reached after the row was written
    assert again == first
    (row,) = await _rows(api_key.api_key)
    assert (row.status_code, row.cost) == (200, first)


async def test_a_request_refused_by_its_limits_leaves_no_row(api_key):
    key = api_key.api_key
    key.allowed_endpoints = ["/v1/audio/transcriptions"]
    call = _call(key)

    async def refused_call() -> None:
        async with call.running():
            await call.admit(Metered(characters=5))

    with pytest.raises(OpenAIError) as refused:
        await refused_call()
    assert refused.value.status == 403
    assert await _rows(key) == []


async def test_a_stream_is_in_the_ledger_as_interrupted_until_it_ends(api_key):
    call = _call(api_key.api_key)
    await call.admit(Metered(characters=10))

    async def body():
        yield b"one"
        call.metered.characters = 10
        yield b"two"

    response = await call.streaming(body(), "audio/mpeg")
    (row,) = await _rows(api_key.api_key)
    assert row.status_code == INTERRUPTED
    assert [chunk async for chunk in response.streaming_content] == [b"one", b"two"]
    (row,) = await _rows(api_key.api_key)
    assert (row.status_code, row.characters) == (200, 10)
    assert row.cost == call.cost > 0


async def test_a_stream_that_fails_sends_its_error_tail_and_records_the_status(api_key):
    call = _call(api_key.api_key)
    await call.admit(Metered(characters=10))

    async def body():
        yield b"one"
        raise invalid_param("gone wrong", param=None)

    response = await call.streaming(
        body(), "text/event-stream", on_error=lambda error: error.message.encode()
    )
    assert [chunk async for chunk in response.streaming_content] == [b"one", b"gone wrong"]
    assert response["Cache-Control"] == "no-cache"
    (row,) = await _rows(api_key.api_key)
    assert (row.status_code, row.cost) == (400, 0)


async def test_an_opened_row_is_written_while_the_provider_starts(api_key):
    call = _call(api_key.api_key)
    await call.admit(Metered(characters=10))
    call.open_row()
    await asyncio.sleep(0.2)  # the provider's first work: the row is already there
    (opened,) = await _rows(api_key.api_key)
    assert opened.status_code == INTERRUPTED

    async def body():
        call.metered.characters = 10
        yield b"one"

    response = await call.streaming(body(), "audio/mpeg")
    assert [chunk async for chunk in response.streaming_content] == [b"one"]
    (row,) = await _rows(api_key.api_key)
    assert (row.pk, row.status_code, row.characters) == (opened.pk, 200, 10)
    assert row.cost == call.cost > 0


async def test_a_call_that_fails_after_opening_its_row_completes_that_row(api_key):
    call = _call(api_key.api_key)

    async def refuse() -> None:
        async with call.running():
            await call.admit(Metered(characters=500))
            call.open_row()
            raise invalid_param("no such voice", param="voice")  # before the row is written

    with pytest.raises(OpenAIError):
        await refuse()
    (row,) = await _rows(api_key.api_key)
    assert (row.status_code, row.cost) == (400, 0)


async def test_a_client_leaving_while_the_row_opens_leaves_one_row(api_key):
    call = _call(api_key.api_key)

    async def answer() -> None:
        async with call.running():
            await call.admit(Metered(characters=500))
            call.open_row()
            await call.streaming(_never(), "audio/mpeg")  # waits for the row, then is cut

    async with _ledger_held():
        task = asyncio.ensure_future(answer())
        await asyncio.sleep(0.3)  # the row's write is waiting on the ledger's lock
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _hot_path_threads_idle()  # a stray write still under way has landed
    (row,) = await _rows(api_key.api_key)
    assert row.status_code == 200  # a departed client: billed for what was made (nothing)


async def _never():
    await asyncio.Event().wait()
    yield b""


async def _hot_path_threads_idle() -> None:
    """Returns once every hot-path thread has finished what it was given before."""
    barrier = threading.Barrier(settings.AROUTER_DB_THREADS)
    await asyncio.gather(*(run_query(barrier.wait) for _ in range(barrier.parties)))


@contextlib.asynccontextmanager
async def _ledger_held():
    """Another connection holds the ledger's table for writing: writes wait until it lets go."""
    other = connections.create_connection("default")
    other.inc_thread_sharing()  # taken and let go from different threads

    def hold() -> None:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            table = other.ops.quote_name(UsageRecord._meta.db_table)
            if other.vendor == "postgresql":
                cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            else:  # SQLite takes its write lock as a writing statement starts
                cursor.execute(f"UPDATE {table} SET id = id WHERE 0 = 1")

    def let_go() -> None:
        other.rollback()
        other.close()

    await asyncio.to_thread(hold)
    try:
        yield
    finally:
        await asyncio.to_thread(let_go)
