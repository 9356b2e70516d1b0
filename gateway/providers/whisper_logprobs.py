"""Per-token log-probabilities of a faster-whisper decode (include[]=logprobs).

faster-whisper reports a segment's average log-probability and, with word timestamps,
a probability per word from a separate alignment pass; neither is the log-probability of
each token as it was decoded. CTranslate2 has those: `Whisper.generate(...,
return_logits_vocab=True)` returns the decoder's logits over the vocabulary at every
step, for greedy and sampling search (not for beam search, whose results come back
without them). So:

- `scoring_model_class()` is faster-whisper's `WhisperModel` whose CTranslate2 model asks
  for those logits, and keeps the decode each 30 s window settled on (after temperature
  fallback), only while the calling thread records (`recording`);
- a request with include[]=logprobs is decoded greedily (beam size 1), and each token's
  log-probability is log-softmax of the raw logits at its step: the model's own
  probability of the token it wrote, before temperature or suppression rules;
- `TokenScores.of(segment)` finds a faster-whisper segment's tokens (a slice of its
  window's decode) and gives its text tokens' `TokenLogprob`s, Whisper's special and
  timestamp tokens left out.

These are faster-whisper internals (its `generate_with_fallback` and `model` attribute,
as of faster-whisper 1.2); tests/test_whisper_provider.py checks that the tokens spell the
transcript, that each segment has its own, and that greedy decoding wrote likely tokens.
"""

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.providers.base import TokenLogprob


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (Whisper's): each vocabulary character back to the
    byte it stands for."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


def token_bytes(vocabulary_entry: str) -> list[int]:
    table = _byte_of_char()
    return [table[char] for char in vocabulary_entry]


@dataclass
class _Decode:
    """One window's settled decode: every token id, and for text tokens its logprob."""

    ids: list[int]
    scored: list[TokenLogprob | None]


@dataclass
class TokenScores:
    """The decodes of one request, in order, recorded on the thread that runs it."""

    decodes: list[_Decode] = field(default_factory=list)

    def add(self, result: Any, tokenizer: Any) -> None:
        ids = list(result.sequences_ids[0])
        steps = result.logits[0] if result.logits else []
        if len(steps) < len(ids):  # decoded without logits (beam search): nothing to give
            return
        logits = np.stack([np.asarray(step, dtype=np.float32) for step in steps[: len(ids)]])
        logits = logits.astype(np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_softmax = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
        vocabulary = tokenizer.tokenizer
        scored: list[TokenLogprob | None] = []
        for step, token in enumerate(ids):
            if token >= tokenizer.eot:  # end of text, language, task, timestamps
                scored.append(None)
                continue
            raw = token_bytes(vocabulary.id_to_token(token))
            scored.append(
                TokenLogprob(
                    token=bytes(raw).decode("utf-8", errors="replace"),
                    logprob=float(log_softmax[step, token]),
                    bytes=raw,
                )
            )
        self.decodes.append(_Decode(ids, scored))

    def of(self, tokens: list[int]) -> list[TokenLogprob]:
        """The text tokens' log-probabilities of a segment holding `tokens` (a run of the
        latest decode that has it)."""
        size = len(tokens)
        for decode in reversed(self.decodes):
            for start in range(len(decode.ids) - size + 1):
                if decode.ids[start : start + size] == tokens:
                    return [p for p in decode.scored[start : start + size] if p is not None]
        return []


class _Recording(threading.local):
    scores: TokenScores | None = None


_recording = _Recording()


@contextlib.contextmanager
def recording(scores: TokenScores | None) -> Iterator[None]:
    """Record this thread's decodes into `scores` (None: record nothing) until the end."""
    _recording.scores = scores
    try:
        yield
    finally:
        _recording.scores = None


class _LogitsOnRequest:
    """CTranslate2's Whisper model, asked for each step's logits while a thread records."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if _recording.scores is not None:
            kwargs["return_logits_vocab"] = True
        return self._model.generate(*args, **kwargs)


@functools.cache
def scoring_model_class() -> type:
    """faster-whisper's `WhisperModel`, recording each window's settled decode while a
    thread records (imported on first use: faster-whisper loads slowly)."""
    from faster_whisper import WhisperModel

    class ScoringWhisperModel(WhisperModel):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model = _LogitsOnRequest(self.model)

        def generate_with_fallback(self, encoder_output, prompt, tokenizer, options):
            decode = super().generate_with_fallback(encoder_output, prompt, tokenizer, options)
            if _recording.scores is not None:
                _recording.scores.add(decode[0], tokenizer)
            return decode

    return ScoringWhisperModel
