"""Splitting text into the pieces a streaming synthesizer speaks one at a time."""

from gateway.audio.sentences import FIRST_PIECE_CHARS, MAX_PIECE_CHARS, split_pieces


def texts(text: str) -> list[str]:
    return [piece.text for piece in split_pieces(text)]


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
