"""Live pieces of speech, heard at their own length.

Whisper reads audio in 30 s windows: faster-whisper pads every clip to one, so a two-second
piece of a realtime turn costs the encoder a whole window (about 0.7 s for Whisper base on
two cores), and finding its language costs it again. CTranslate2's encoder takes a shorter
input (the positional embedding is read for the frames given), so a piece is encoded at its
own length with three seconds of silence after it (with less, Whisper often does not see
the speech end and repeats it): a two-second piece then takes about 0.2 s in all. Short
pieces read this way come out as the padded window reads them; a long one (more than
`LONGEST_SECONDS`) takes the usual path. A piece whose text repeats itself (zlib
compression ratio over 2.4, Whisper's own test; more tokens than anyone says in its time;
or the same phrase twice at its end) is heard again with ten seconds of silence after it,
then, if it still repeats, the usual way, in the language already found.

The language is found on the same short encoding (one decoder step), the search is the
model's beam search (on so short an encoding it costs about what greedy search does) or a
sample at the one temperature asked for, with no fallback to other temperatures; a piece
Whisper itself judges silent (no-speech probability over 0.6 with a low average
log-probability, its own rule) is heard as nothing.
"""

import re
import zlib
from dataclasses import dataclass

import numpy as np

from gateway.audio.decode import SAMPLE_RATE

LONGEST_SECONDS = 20.0
# Silence after the piece: three seconds, and if the text repeats itself then ten.
TRAILING_SILENCE_SECONDS = (3.0, 10.0)
MAX_WINDOW_FRAMES = 3000  # 30 s of 10 ms mel frames: the encoder's positions
MAX_NEW_TOKENS = 224
REPEATING_COMPRESSION_RATIO = 2.4
# More tokens than anyone says in the time (fast speech is under 6 a second): a loop.
MOST_TOKENS, MOST_TOKENS_PER_SECOND = 10, 8
# A phrase this long said twice in a row, ending a piece, is Whisper writing it again.
MIN_REPEATED_WORDS = 3
NO_SPEECH_PROB = 0.6
SILENT_LOGPROB = -1.0


@dataclass(frozen=True)
class LivePiece:
    text: str
    language: str  # Whisper's language code ("en")
    repeats: bool = False  # the text repeats itself: hear the piece the usual way


def fits(samples: np.ndarray) -> bool:
    return len(samples) / SAMPLE_RATE <= LONGEST_SECONDS


def hear_piece(
    model,
    samples: np.ndarray,
    language: str | None,
    task: str,
    prompt: str | None,
    temperature: float,
    beam_size: int = 1,
) -> LivePiece:
    """Transcribe (or translate) one short piece with a faster-whisper `WhisperModel`."""
    from faster_whisper.tokenizer import Tokenizer

    multilingual = model.model.is_multilingual
    piece = None
    for silence_seconds in TRAILING_SILENCE_SECONDS:
        encoded = _encoded(model, samples, silence_seconds)
        if language is None:
            language = "en"
            if multilingual:
                best_token, _ = model.model.detect_language(encoded)[0][0]
                language = best_token[2:-2]  # "<|fr|>"
        tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task=task, language=language)
        tokens = _decoded(model, encoded, tokenizer, prompt, temperature, beam_size)
        text = tokenizer.decode(tokens).strip()
        repeats = repeats_itself(text, len(tokens), len(samples) / SAMPLE_RATE)
        piece = LivePiece(text=text, language=language, repeats=repeats)
        if not repeats:
            break
    return piece


def _encoded(model, samples: np.ndarray, silence_seconds: float):
    padded = np.concatenate([samples, np.zeros(int(silence_seconds * SAMPLE_RATE))])
    features = model.feature_extractor(padded)
    frames = min(MAX_WINDOW_FRAMES, features.shape[-1] // 2 * 2)  # the encoder halves them
    return model.encode(np.ascontiguousarray(features[:, :frames], dtype=np.float32))


def _decoded(
    model, encoded, tokenizer, prompt: str | None, temperature: float, beam_size: int
) -> list[int]:
    """The text tokens Whisper writes for the encoded piece (none if it hears silence)."""
    previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
    sampling = {"sampling_topk": 0, "sampling_temperature": temperature} if temperature > 0 else {}
    result = model.model.generate(
        encoded,
        [model.get_prompt(tokenizer, previous, without_timestamps=True)],
        beam_size=1 if temperature > 0 else beam_size,
        max_length=MAX_NEW_TOKENS,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=[-1],
        **sampling,
    )[0]
    tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
    if result.no_speech_prob > NO_SPEECH_PROB and result.scores[0] < SILENT_LOGPROB:
        return []
    return tokens


def repeats_itself(text: str, tokens: int, seconds: float) -> bool:
    """Whether Whisper looped: its text compresses too well, is too long for the time, or
    ends with the same phrase twice in a row (the whole piece written again, its commonest
    loop on a short piece: too short a text to compress well)."""
    return (
        _compression_ratio(text) > REPEATING_COMPRESSION_RATIO
        or tokens > MOST_TOKENS + MOST_TOKENS_PER_SECOND * seconds
        or _ends_with_a_repeat(re.findall(r"\w+", text.casefold()))
    )


def _ends_with_a_repeat(words: list[str]) -> bool:
    """Whether the last words are a phrase of `MIN_REPEATED_WORDS` or more said twice (a
    shorter one, "thank you, thank you", may well be spoken)."""
    count = len(words)
    return any(
        words[count - 2 * length : count - length] == words[count - length :]
        for length in range(MIN_REPEATED_WORDS, count // 2 + 1)
    )


def _compression_ratio(text: str) -> float:
    encoded = text.encode()
    return len(encoded) / len(zlib.compress(encoded)) if encoded else 0.0
