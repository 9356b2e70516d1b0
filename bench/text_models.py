"""The local text models side by side: time to first token, to the first sentence the
cascade can speak, and decode speed, on this machine.

Each one-line question is asked as the cascade asks it (local/audio-chat's system prompt
first), with the llama provider's own settings (threads: half the cores): once with the whole
prompt evaluated (a new conversation), once with the system prompt already in the context
(a later turn). Prints the medians over the questions for each model.

Usage: .venv/bin/python bench/text_models.py
"""

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AROUTER_DATA_DIR", tempfile.mkdtemp(prefix="arouter-bench-"))
os.environ.setdefault("AROUTER_CACHE_DIR", str(ROOT / "data" / "models"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arouter.settings")

import django  # noqa: E402

django.setup()

from gateway.audio.sentences import SentenceSplitter  # noqa: E402
from gateway.catalog import catalog  # noqa: E402
from gateway.providers import provider_for  # noqa: E402
from gateway.providers.base import ChatJob, ChatReply, TextMessage  # noqa: E402

MODELS = ["local/smollm2-135m-instruct", "local/gemma-3-270m"]
QUESTIONS = [
    "What is the capital of France?",
    "Tell me a short joke.",
    "How many legs does a spider have?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
]
MAX_TOKENS = 48


async def one_turn(provider, job: ChatJob) -> tuple[float, float, float, ChatReply]:
    """Seconds to the first delta, to the first sentence handed to the synthesizer (as the
    cascade cuts it), in all, and the reply."""
    started = time.perf_counter()
    first = sentence = None
    splitter = SentenceSplitter()
    async for item in provider.stream(job):
        now = time.perf_counter() - started
        if isinstance(item, str):
            first = now if first is None else first
            if sentence is None and splitter.feed(item):
                sentence = now
        if isinstance(item, ChatReply):
            return first or now, sentence or now, now, item
    raise RuntimeError("the stream ended without a reply")


async def bench(model_id: str, reuse_prefix: bool) -> None:
    """One line of medians. Seeded requests are evaluated whole (a new conversation);
    unseeded ones reuse the prefix the last prompt left in the context, here the system
    prompt (as the next turn of a conversation reuses its history)."""
    cascade = provider_for(catalog().get("local/audio-chat"))
    provider = provider_for(catalog().get(model_id))
    provider.preload()
    first_tokens, sentences, rates, prompts, sample = [], [], [], [], ""
    for seed, question in enumerate(QUESTIONS):
        job = cascade.instructed(
            ChatJob(
                messages=[TextMessage("user", question)],
                max_tokens=MAX_TOKENS,
                temperature=0,
                seed=None if reuse_prefix else seed,
            )
        )
        first, sentence, total, reply = await one_turn(provider, job)
        first_tokens.append(first)
        sentences.append(sentence)
        prompts.append(reply.prompt_tokens)
        if reply.completion_tokens > 1 and total > first:
            # Decode speed: the tokens after the first, over the time after the first.
            rates.append((reply.completion_tokens - 1) / (total - first))
        sample = sample or f"{question!r} -> {reply.text!r}"
    print(
        f"{model_id:28} {'prefix reused' if reuse_prefix else 'whole prompt':13}"
        f" first token {statistics.median(first_tokens) * 1000:5.0f} ms"
        f" (min {min(first_tokens) * 1000:.0f}, max {max(first_tokens) * 1000:.0f})"
        f"  first sentence {statistics.median(sentences) * 1000:5.0f} ms"
        f"  decode {statistics.median(rates):5.1f} tokens/s"
        f"  prompt {statistics.median(prompts):.0f} tokens, {provider.n_threads} thread(s)"
    )
    if not reuse_prefix:
        print(f"{'':42} e.g. {sample}")


async def main() -> None:
    print(f"{os.cpu_count()} cores; {len(QUESTIONS)} one-line questions, median each")
    for model_id in MODELS:
        await bench(model_id, reuse_prefix=False)
        await bench(model_id, reuse_prefix=True)


if __name__ == "__main__":
    asyncio.run(main())
