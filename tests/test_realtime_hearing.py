"""Hearing a turn in pieces: each piece read with the turn so far as its context, and what
a piece only writes back of that context dropped."""

import pytest

from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.realtime.hearing import after_context, transcribe_pcm
from tests.chat_speech import spoken_pcm, word_error_rate

QUESTION = "How tall is the Eiffel Tower?"


@pytest.mark.parametrize(
    ("text", "said_before", "heard"),
    [
        # Nothing but the context's end: the prompt written back for a breath.
        (QUESTION, QUESTION, ""),
        ("the Eiffel Tower.", QUESTION, ""),
        ("eiffel tower", QUESTION, ""),
        # The context written again before the piece's own words.
        (f"{QUESTION} {QUESTION}", QUESTION, QUESTION),
        ("the Eiffel Tower? And in metres?", QUESTION, "And in metres?"),
        # Not a repeat of the context's end, or too short to be sure it is one.
        ("in metres?", QUESTION, "in metres?"),
        ("How tall", QUESTION, "How tall"),
        ("Tower, I mean.", QUESTION, "Tower, I mean."),
        ("", QUESTION, ""),
        ("Hello.", "", "Hello."),
    ],
)
def test_a_piece_keeps_only_what_does_not_repeat_its_context(text, said_before, heard):
    assert after_context(text, said_before) == heard


@pytest.fixture(scope="module")
def whisper():
    return provider_for(catalog().get("local/whisper-base"))


@pytest.mark.engines
async def test_a_piece_is_heard_with_its_context(whisper):
    pcm = (await spoken_pcm(QUESTION)).tobytes()
    heard = await transcribe_pcm(pcm, whisper, None, said_before="Good morning.")
    assert word_error_rate(QUESTION, heard) <= 0.2


@pytest.mark.engines
async def test_a_piece_read_after_its_own_words_is_not_heard_twice(whisper):
    # Whisper, read a prompt that is the piece's own words, writes them once or twice:
    # once heard, the second copy is dropped, or the whole piece as nothing but its context.
    pcm = (await spoken_pcm(QUESTION)).tobytes()
    heard = await transcribe_pcm(pcm, whisper, None, said_before=QUESTION)
    assert heard == "" or word_error_rate(QUESTION, heard) <= 0.2
