"""CascadeProvider: hearing every input format, and speaking while the model writes.

How a reply is cut into sentences is tests/test_sentences.py's.
"""

import pytest

from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.base import ChatJob, ChatReply, Spoken, TextMessage
from tests.cascade_text_model import cascade_system_prompt, text_model_on_fault_server


@pytest.mark.engines
async def test_converse_speaks_each_sentence_and_ends_with_the_reply(tmp_path):
    job = ChatJob(
        messages=[TextMessage("user", "Tell me about the sea.")],
        max_tokens=30,
        temperature=0.7,
        seed=3,
    )
    with text_model_on_fault_server(tmp_path) as asked:
        cascade = provider_for(catalog().get("local/audio-chat"))
        events = [event async for event in cascade.converse(job, "alloy")]
        (sent,) = asked()
    # The text model was asked the job itself, once, after the cascade's system prompt.
    assert sent["messages"] == [
        {"role": "system", "content": cascade_system_prompt()},
        {"role": "user", "content": "Tell me about the sea."},
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["seed"]) == (30, 0.7, 3)
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


async def test_the_system_prompt_comes_before_the_clients_own(tmp_path):
    job = ChatJob(
        messages=[
            TextMessage("system", "Speak like a pirate."),
            TextMessage("user", "Hi."),
            TextMessage("system", "Be brief."),
        ],
        max_tokens=4,
    )
    with text_model_on_fault_server(tmp_path) as asked:
        cascade = provider_for(catalog().get("local/audio-chat"))
        await cascade.complete(job)
        (sent,) = asked()
    # One leading system turn: the cascade's prompt, then the client's; the rest untouched.
    assert sent["messages"] == [
        {"role": "system", "content": f"{cascade_system_prompt()}\n\nSpeak like a pirate."},
        {"role": "user", "content": "Hi."},
        {"role": "system", "content": "Be brief."},
    ]


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
