"""LlamaProvider on the packaged Gemma 3 270M GGUF (a tiny BASE model: replies are not
meaningful, so only mechanics are asserted: prompt layout, limits, counts, cancellation)."""

import pytest

from gateway.catalog import catalog
from gateway.providers import provider_for
from gateway.providers.base import ChatJob, ChatModel, ChatReply, TextMessage
from gateway.providers.llama import transcript_prompt

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def llama():
    return provider_for(catalog().get("local/gemma-3-270m"))


def job(text: str = "Count: one, two, three,", **kwargs) -> ChatJob:
    kwargs.setdefault("max_tokens", 8)
    kwargs.setdefault("temperature", 0)
    return ChatJob(messages=[TextMessage("user", text)], **kwargs)


def test_prompt_is_a_plain_transcript_ending_with_the_assistant_turn():
    prompt = transcript_prompt([TextMessage("system", "Be kind."), TextMessage("user", " Hi ")])
    assert prompt == "System: Be kind.\nUser: Hi\nAssistant:"


def test_is_a_chat_model_and_counts_with_its_own_tokenizer(llama):
    assert isinstance(llama, ChatModel)
    assert llama.count_tokens("") == 0
    assert llama.count_tokens("hello world") == 2
    assert llama.count_tokens("hello world, hello world") > llama.count_tokens("hello world")


async def test_stream_yields_deltas_then_a_reply_that_matches_them(llama):
    items = [item async for item in llama.stream(job(max_tokens=6))]
    *deltas, reply = items
    assert isinstance(reply, ChatReply)
    assert all(isinstance(delta, str) for delta in deltas)
    assert "".join(deltas) == reply.text
    assert 0 < reply.completion_tokens <= 6
    assert reply.prompt_tokens == llama.count_tokens(transcript_prompt(job().messages)) + 1  # BOS


async def test_max_tokens_cuts_with_length(llama):
    reply = await llama.complete(job("Write a very long essay about rivers.", max_tokens=2))
    assert reply.completion_tokens <= 2
    assert reply.finish_reason == "length"


async def test_seeded_sampling_is_repeatable(llama):
    first = await llama.complete(job(temperature=0.9, seed=11))
    second = await llama.complete(job(temperature=0.9, seed=11))
    assert first.text == second.text


async def test_closing_the_stream_early_frees_the_model(llama):
    stream = llama.stream(job("Tell me a long story.", max_tokens=200, temperature=0.8))
    first = await anext(stream)
    assert isinstance(first, str)
    await stream.aclose()
    # The context went back to the pool: the next request is served.
    reply = await llama.complete(job(max_tokens=2))
    assert reply.completion_tokens <= 2
