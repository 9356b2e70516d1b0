"""The local text models side by side: time to first token and decode speed on this machine.

Each one-line question is asked as the cascade asks it (local/audio-chat's system prompt
first), with the llama provider's own settings (threads: half the cores). Every request is
seeded, so its whole prompt is evaluated (no prefix left cached by the one before): the
first-token time is that of a new turn. Prints the median over the questions for each model.

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


async def one_turn(provider, job: ChatJob) -> tuple[float, float, ChatReply]:
    """Seconds to the first delta, seconds in all, and the reply."""
    started = time.perf_counter()
    first = None
    async for item in provider.stream(job):
        if isinstance(item, str) and first is None:
            first = time.perf_counter() - started
        if isinstance(item, ChatReply):
            return first or 0.0, time.perf_counter() - started, item
    raise RuntimeError("the stream ended without a reply")


async def bench(model_id: str) -> None:
    cascade = provider_for(catalog().get("local/audio-chat"))
    provider = provider_for(catalog().get(model_id))
    provider.preload()
    first_tokens, rates, prompts, sample = [], [], [], ""
    for seed, question in enumerate(QUESTIONS):
        job = cascade.instructed(
            ChatJob(
                messages=[TextMessage("user", question)],
                max_tokens=MAX_TOKENS,
                temperature=0,
                seed=seed,
            )
        )
        first, total, reply = await one_turn(provider, job)
        first_tokens.append(first)
        prompts.append(reply.prompt_tokens)
        if reply.completion_tokens > 1 and total > first:
            # Decode speed: the tokens after the first, over the time after the first.
            rates.append((reply.completion_tokens - 1) / (total - first))
        sample = sample or f"{question!r} -> {reply.text!r}"
    print(
        f"{model_id:32} first token {statistics.median(first_tokens) * 1000:6.0f} ms"
        f" (min {min(first_tokens) * 1000:.0f}, max {max(first_tokens) * 1000:.0f})"
        f"  decode {statistics.median(rates):6.1f} tokens/s"
        f"  prompt {statistics.median(prompts):.0f} tokens"
        f"  threads {provider.n_threads}"
    )
    print(f"{'':32} e.g. {sample}")


async def main() -> None:
    print(f"{os.cpu_count()} cores; {len(QUESTIONS)} one-line questions, median each")
    for model_id in MODELS:
        await bench(model_id)


if __name__ == "__main__":
    asyncio.run(main())
