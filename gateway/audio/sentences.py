"""Cut text into the pieces a synthesizer speaks one at a time, whole or as it is written.

Each piece is synthesized and sent on its own, so the first one decides the time to first
audio: it ends at the first sentence end or, once FIRST_CLAUSE_CHARS have come before it,
at a clause (comma, semicolon, colon, dash), and is never longer than FIRST_PIECE_CHARS.
The rest are whole sentences; a sentence longer than MAX_PIECE_CHARS is cut at its clause
marks, else at spaces. Piper cuts a whole input (`split_pieces`); the audio chat cascade
feeds the reply to a `SentenceSplitter` as the text model writes it. Both cut alike.
"""

import re
from dataclasses import dataclass

# A sentence ends at . ! ? … (with closing quotes/brackets) before whitespace, or at a
# line break. Abbreviations such as "e.g. this" split early; harmless for synthesis.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\S")

FIRST_CLAUSE_CHARS = 16  # a shorter opening clause would sound clipped on its own
FIRST_PIECE_CHARS = 60  # longer openings are cut at a clause (or word) boundary
MAX_PIECE_CHARS = 200  # no piece longer than this: bounds the wait between sends


@dataclass(frozen=True)
class Piece:
    text: str  # what is spoken: whitespace-trimmed, never empty
    start: int  # offset of the text in the whole input
    end: int  # offset just past it: input[:end] has been spoken once this piece is
    covers: str  # the input since the previous piece, through this one's trailing space

    @property
    def sentence_end(self) -> bool:
        return self.text.rstrip("\"')]").endswith((".", "!", "?", "…"))


class SentenceSplitter:
    """Cuts a growing text into pieces as its deltas arrive; `flush` gives the rest.

    Every piece's `covers` joined gives the text fed so far (but for whitespace at its
    end), so a client that shows them in turn shows the whole text.
    """

    def __init__(self) -> None:
        self._pending = ""  # fed, not yet cut
        self._offset = 0  # where _pending starts in the whole input
        self._first = True

    def feed(self, delta: str) -> list[Piece]:
        self._pending += delta
        pieces = []
        while (cut := self._next_cut()) is not None:
            pieces.append(self._take(cut))
        return pieces

    def flush(self) -> list[Piece]:
        """The text left over (less than a piece): the last piece, if any."""
        if not self._pending.strip():
            self._pending = ""
            return []
        return [self._take(len(self._pending))]

    def _next_cut(self) -> int | None:
        """Where in _pending the next piece ends, or None to wait for more text."""
        word = _WORD.search(self._pending)
        if word is None:
            return None
        lead = word.start()
        limit = FIRST_PIECE_CHARS if self._first else MAX_PIECE_CHARS
        end = self._earliest_end(lead)
        if end is not None and len(self._pending[lead : end.end()].rstrip()) <= limit:
            return end.end()
        if end is None and len(self._pending) - lead <= limit:
            return None
        return self._overlong_cut(lead, limit)

    def _earliest_end(self, lead: int) -> re.Match | None:
        """The first sentence end or, for the first piece, a late enough clause end."""
        end = _SENTENCE_END.search(self._pending, lead)
        if self._first:
            clauses = _CLAUSE_END.finditer(self._pending, lead)
            clause = next((m for m in clauses if m.start() - lead > FIRST_CLAUSE_CHARS), None)
            if clause is not None and (end is None or clause.start() < end.start()):
                end = clause
        return end

    def _overlong_cut(self, lead: int, limit: int) -> int:
        """No end within `limit`: cut at the last clause mark, else space, that fits."""
        stop = lead + limit + 1  # the whitespace just after the last character that fits
        for pattern in (_CLAUSE_END, _SPACE):
            cuts = [m for m in pattern.finditer(self._pending, lead, stop) if m.start() > lead]
            if cuts:
                return cuts[-1].end()
        return lead + limit  # one word longer than a piece: cut inside it

    def _take(self, cut: int) -> Piece:
        covers, self._pending = self._pending[:cut], self._pending[cut:]
        text = covers.strip()
        start = self._offset + len(covers) - len(covers.lstrip())
        self._offset += cut
        self._first = False
        return Piece(text, start, start + len(text), covers)


def split_pieces(text: str) -> list[Piece]:
    """The pieces of a whole `text`, in order."""
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()
