"""Speech for the chat tests: questions spoken by the project's own Piper provider, and WER."""

import asyncio
import dataclasses
import re

import jiwer
import numpy as np

from gateway.catalog import catalog
from gateway.providers import provider_for


def _normalize(text: str) -> str:
    # Whisper writes spoken numbers with thousands separators ("451,187,209").
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    return re.sub(r"[^a-z0-9' ]+", " ", text).strip()


def word_error_rate(reference: str, hypothesis: str) -> float:
    reference, hypothesis = _normalize(reference), _normalize(hypothesis)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return jiwer.wer(reference, hypothesis or "<nothing>")


def heard_error_rate(spoken: str, heard: str) -> float:
    """How far what Whisper heard is from what was spoken, by characters with the word
    breaks removed: the base model's short replies make word error rates jump on one merged
    homophone ("France is" heard as "Francis" is two word errors in six), while real
    mishearing still shows up as changed characters."""
    spoken, heard = _normalize(spoken).replace(" ", ""), _normalize(heard).replace(" ", "")
    if not spoken:
        return 0.0 if not heard else 1.0
    return jiwer.cer(spoken, heard or "<nothing>")


_cache: dict[tuple[str, str], np.ndarray] = {}


def speak(text: str, voice: str = "alloy") -> np.ndarray:
    """`text` as int16 mono samples at 24 kHz, the same samples in every run.

    Piper's voices draw noise for each rendering, and Whisper base mishears some of them
    ("How tall" as "How Paul"), so a test asserting what is heard would pass or fail by
    chance. The test speaker's voice has no noise: one rendering, heard the same each time.
    """
    if (text, voice) not in _cache:
        piper = provider_for(catalog().get("local/piper"))
        steady = dataclasses.replace(piper.style(voice), noise_scale=0.0, noise_w=0.0)
        _cache[text, voice] = piper.synthesize_pcm_as(steady, text)
    return _cache[text, voice]


async def spoken_pcm(text: str, voice: str = "alloy") -> np.ndarray:
    return await asyncio.to_thread(speak, text, voice)
