"""Cut text into the pieces a streaming synthesizer speaks one at a time.

Each piece is synthesized and sent on its own, so the first one decides the time to first
audio: it is kept short (the first clause of a long opening sentence), the rest are whole
sentences, with overlong ones cut at clause punctuation or spaces.
"""

import re
from dataclasses import dataclass

# A sentence ends at . ! ? … (with closing quotes/brackets) before whitespace, or at a
# line break. Abbreviations such as "e.g. this" split early; harmless for synthesis.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")

FIRST_PIECE_CHARS = 60  # longer openings are cut at a clause (or word) boundary
MAX_PIECE_CHARS = 300  # no piece longer than this: bounds the wait between sends


@dataclass(frozen=True)
class Piece:
    text: str
    start: int  # offset of the piece in the original input
    end: int  # offset just past it: input[:end] has been spoken once this piece is

    @property
    def sentence_end(self) -> bool:
        return self.text.rstrip("\"')]").endswith((".", "!", "?", "…"))


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    cursor = start
    for match in pattern.finditer(text, start, end):
        if match.start() > cursor:
            spans.append((cursor, match.start()))
        cursor = match.end()
    if cursor < end:
        spans.append((cursor, end))
    return spans


def _cut(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Cut text[start:end] into spans of at most `limit` chars at clause, then word, marks."""
    if end - start <= limit:
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    for clause_start, clause_end in _spans(text, _CLAUSE_END, start, end):
        if pieces and clause_end - pieces[-1][0] <= limit:
            pieces[-1] = (pieces[-1][0], clause_end)  # join short clauses back together
        elif clause_end - clause_start <= limit:
            pieces.append((clause_start, clause_end))
        else:
            cursor = clause_start
            while clause_end - cursor > limit:
                space = text.rfind(" ", cursor, cursor + limit)
                cut = space if space > cursor else cursor + limit
                pieces.append((cursor, cut))
                cursor = cut
                while cursor < clause_end and text[cursor].isspace():
                    cursor += 1
            if cursor < clause_end:
                pieces.append((cursor, clause_end))
    return pieces


def split_pieces(text: str) -> list[Piece]:
    """The pieces of `text` in order, whitespace-trimmed, none empty."""
    spans: list[tuple[int, int]] = []
    for start, end in _spans(text, _SENTENCE_END, 0, len(text)):
        if not spans and end - start > FIRST_PIECE_CHARS:
            # Only the very first piece needs to be short; the rest of its sentence
            # goes on in ordinary pieces.
            first = _cut(text, start, end, FIRST_PIECE_CHARS)[0]
            spans.append(first)
            start = first[1]
        spans.extend(_cut(text, start, end, MAX_PIECE_CHARS))
    pieces: list[Piece] = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            pieces.append(Piece(text[start:end], start, end))
    return pieces
