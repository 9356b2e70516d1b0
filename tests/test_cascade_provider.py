"""CascadeProvider: sentence cutting, the audio token rule, and speaking while writing."""

import pytest

from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.base import ChatJob, ChatReply, ChatTurn, Spoken
from gateway.providers.cascade import SentenceSplitter, prompt_observers


def cut(text: str) -> list[str]:
    splitter = SentenceSplitter()
    pieces = []
    for word in text.split(" "):
        pieces += splitter.feed(word + " ")
    return pieces + splitter.flush()


def test_first_piece_may_end_at_a_clause_then_whole_sentences():
    pieces = cut("Well, I think that the answer, if there is one, is Paris. It is big! And old")
    assert pieces == [
        "Well, I think that the answer, ",
        "if there is one, is Paris. ",
        "It is big! ",
        "And old ",
    ]


def test_short_replies_and_line_breaks():
    assert cut("Yes.") == ["Yes. "]
    assert cut("") == []
    splitter = SentenceSplitter()
    assert splitter.feed("One\nTwo") == ["One\n"]
    assert splitter.flush() == ["Two"]


def test_text_without_sentence_ends_is_cut_at_clauses_before_it_grows_long():
    text = ", ".join(str(n) for n in range(1, 200)) + ","
    pieces = cut(text)
    assert len(pieces) > 3
    assert all(len(piece) <= SentenceSplitter.MAX_PIECE_CHARS for piece in pieces)
    assert "".join(pieces).split() == text.split()


@pytest.mark.engines
async def test_converse_speaks_each_sentence_and_ends_with_the_reply():
    cascade = provider_for(catalog().get("local/audio-chat"))
    seen = []
    prompt_observers.append(seen.append)
    try:
        job = ChatJob(
            messages=[ChatTurn("user", "Tell me about the sea.")],
            max_tokens=30,
            temperature=0.7,
            seed=3,
        )
        events = [event async for event in cascade.converse(job, "alloy")]
    finally:
        prompt_observers.remove(seen.append)
    assert seen == [job]
    *body, reply = events
    assert isinstance(reply, ChatReply)
    text = "".join(e for e in body if isinstance(e, str))
    spoken = [e for e in body if isinstance(e, Spoken)]
    assert text == reply.text
    assert spoken, "no audio"
    assert "".join(s.transcript for s in spoken).strip() == text.strip()
    assert all(len(s.pcm) % 2 == 0 and s.seconds > 0 for s in spoken)
    # Text arrives before the audio that speaks it.
    assert isinstance(body[0], str)


@pytest.mark.engines
@pytest.mark.parametrize("fmt", ["ogg", "flac", "m4a", "webm"])
async def test_hears_every_input_audio_format(fmt):
    """wav and mp3 go through the SDK in test_chat_audio; the spec's other four here."""
    import asyncio

    from tests.chat_speech import speak, word_error_rate
    from tests.speech_fixtures import UPLOAD_FORMATS, encode_pcm

    question = "What is the capital of France?"
    muxer, codec, rate, _ = UPLOAD_FORMATS[fmt]
    pcm = await asyncio.to_thread(speak, question)
    data = encode_pcm(pcm, 24_000, muxer, codec, rate)
    cascade = provider_for(catalog().get("local/audio-chat"))
    heard = await cascade.hear(data, fmt, "messages[0].content[0].input_audio.data")
    assert word_error_rate(question, heard.text) <= 0.3
    assert heard.seconds == pytest.approx(len(pcm) / 24_000, abs=0.15)


@pytest.mark.engines
async def test_unreadable_audio_errors_name_the_part():
    from core.errors import OpenAIError

    cascade = provider_for(catalog().get("local/audio-chat"))
    with pytest.raises(OpenAIError) as caught:
        await cascade.hear(b"\x00" * 2000, "webm", "messages[2].content[1].input_audio.data")
    assert caught.value.status == 400
    assert caught.value.param == "messages[2].content[1].input_audio.data"
