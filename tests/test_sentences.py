"""Splitting text into the pieces a synthesizer speaks one at a time: a whole input
(Piper) or a reply fed delta by delta as a text model writes it (the audio chat cascade)."""

from gateway.audio.sentences import (
    FIRST_PIECE_CHARS,
    MAX_PIECE_CHARS,
    SentenceSplitter,
    split_pieces,
)


def texts(text: str) -> list[str]:
    return [piece.text for piece in split_pieces(text)]


def fed_word_by_word(text: str) -> list[str]:
    """What each piece covers when `text` arrives one word (and its space) at a time."""
    splitter = SentenceSplitter()
    pieces = []
    for word in text.split(" "):
        pieces += splitter.feed(word + " ")
    return [piece.covers for piece in pieces + splitter.flush()]


def test_sentences_split_at_end_punctuation_and_line_breaks():
    assert texts("Hello! Welcome to ARouter. Is it fast? Yes…\nNew line") == [
        "Hello!",
        "Welcome to ARouter.",
        "Is it fast?",
        "Yes…",
        "New line",
    ]


def test_offsets_point_into_the_original_text():
    text = '  He said "stop." Then   left.  '
    for piece in split_pieces(text):
        assert text[piece.start : piece.end] == piece.text
    assert split_pieces(text)[-1].end == len(text.rstrip())


def test_a_long_opening_sentence_gives_a_short_first_piece():
    opening = "The first sentence runs on, and on, well past the point " * 3 + "of reason."
    pieces = split_pieces(opening + " Short second.")
    assert len(pieces[0].text) <= FIRST_PIECE_CHARS
    assert pieces[0].text.endswith(",")  # cut at a clause, not inside a word
    assert " ".join(p.text for p in pieces) == opening + " Short second."


def test_no_piece_exceeds_the_maximum_even_without_punctuation():
    pieces = split_pieces("word " * 400)
    assert all(len(p.text) <= MAX_PIECE_CHARS for p in pieces)
    assert " ".join(p.text for p in pieces) == ("word " * 400).strip()


def test_sentence_end_marks_full_stops_only():
    pieces = split_pieces("A clause first, " + "x" * 90 + ". Done")
    assert [p.sentence_end for p in pieces] == [False, True, False]


def test_blank_text_has_no_pieces():
    assert split_pieces(" \n\t ") == []


# --- fed as it is written ------------------------------------------------------------------


def test_first_piece_may_end_at_a_clause_then_whole_sentences():
    pieces = fed_word_by_word(
        "Well, I think that the answer, if there is one, is Paris. It is big! And old"
    )
    assert pieces == [
        "Well, I think that the answer, ",
        "if there is one, is Paris. ",
        "It is big! ",
        "And old ",
    ]


def test_short_replies_and_line_breaks():
    assert fed_word_by_word("Yes.") == ["Yes. "]
    assert fed_word_by_word("") == []
    splitter = SentenceSplitter()
    assert [p.covers for p in splitter.feed("One\nTwo")] == ["One\n"]
    assert [p.covers for p in splitter.flush()] == ["Two"]


def test_text_without_sentence_ends_is_cut_at_clauses_before_it_grows_long():
    text = ", ".join(str(n) for n in range(1, 200)) + ","
    pieces = fed_word_by_word(text)
    assert len(pieces) > 3
    assert all(len(piece.strip()) <= MAX_PIECE_CHARS for piece in pieces)
    assert "".join(pieces).split() == text.split()


def test_fed_in_deltas_or_whole_the_text_is_cut_alike():
    text = (
        "Well, I think that the answer, if there is one, is Paris. It is big!\n"
        + "A clause first, " + "x" * 90 + ". " + "word " * 80 + "and done."
    )  # fmt: skip
    splitter = SentenceSplitter()
    fed = [p for i in range(0, len(text), 3) for p in splitter.feed(text[i : i + 3])]
    fed += splitter.flush()
    assert fed == split_pieces(text)
    assert "".join(p.covers for p in fed) == text
