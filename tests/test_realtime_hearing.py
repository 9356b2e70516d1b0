"""Hearing a turn in pieces: each piece read with the turn so far as its context, and a
piece that only writes that context back heard as nothing."""

import pytest

from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.realtime.hearing import echoes, transcribe_pcm
from tests.chat_speech import spoken_pcm, word_error_rate

QUESTION = "How tall is the Eiffel Tower?"


@pytest.mark.parametrize(
    ("text", "said_before", "echo"),
    [
        ("How tall is the Eiffel Tower?", "How tall is the Eiffel Tower?", True),
        ("the Eiffel Tower.", "How tall is the Eiffel Tower?", True),
        ("eiffel tower", "How tall is the Eiffel Tower?", True),
        ("in metres?", "How tall is the Eiffel Tower?", False),
        ("How tall", "How tall is the Eiffel Tower?", False),  # its start, not its end
        ("", "How tall is the Eiffel Tower?", False),
        ("Hello.", "", False),
    ],
)
def test_a_piece_echoes_only_the_end_of_its_context(text, said_before, echo):
    assert echoes(text, said_before) is echo


@pytest.fixture(scope="module")
def whisper():
    return provider_for(catalog().get("local/whisper-base"))


@pytest.mark.engines
async def test_a_piece_is_heard_with_its_context(whisper):
    pcm = (await spoken_pcm(QUESTION)).tobytes()
    heard = await transcribe_pcm(pcm, whisper, None, said_before="Good morning.")
    assert word_error_rate(QUESTION, heard) <= 0.2


@pytest.mark.engines
async def test_a_piece_that_writes_its_context_back_is_heard_as_nothing(whisper):
    pcm = (await spoken_pcm(QUESTION)).tobytes()
    assert await transcribe_pcm(pcm, whisper, None, said_before=QUESTION) == ""
