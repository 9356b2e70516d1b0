"""Cutting long audio at pauses and stitching the pieces' transcripts back together."""

import base64
import io
import itertools
import wave

import numpy as np
import pytest

from gateway.audio.chunking import plan_cuts, speakers_heard, stitch
from gateway.providers.base import KnownSpeaker, Segment, Transcript, Word

RATE = 16_000


def bursts(seconds: float, tone: float = 0.5, gap: float = 0.3) -> np.ndarray:
    """Tone bursts of `tone` seconds separated by `gap` seconds of silence."""
    t = np.arange(int(seconds * RATE)) / RATE
    loud = (t % (tone + gap)) < tone
    return (np.sin(2 * np.pi * 300 * t) * 10_000 * loud).astype(np.int16)


def test_short_audio_is_one_piece():
    samples = bursts(4.0)
    assert plan_cuts(samples, RATE, 10.0) == [(0, len(samples))]


def test_pieces_cover_everything_and_respect_the_limit():
    samples = bursts(61.0)
    cuts = plan_cuts(samples, RATE, 10.0)
    assert cuts[0][0] == 0
    assert cuts[-1][1] == len(samples)
    assert all(end == next_start for (_, end), (next_start, _) in itertools.pairwise(cuts))
    assert all(0 < end - start <= 10 * RATE for start, end in cuts)
    assert len(cuts) >= 7


def test_cuts_land_in_silence():
    samples = bursts(40.0)
    for _, end in plan_cuts(samples, RATE, 7.0)[:-1]:
        around = samples[end - 80 : end + 80]  # 5 ms either side
        assert np.abs(around).max() == 0


def test_audio_without_pauses_is_still_cut_under_the_limit():
    samples = (np.sin(np.arange(25 * RATE) / 5) * 10_000).astype(np.int16)
    cuts = plan_cuts(samples, RATE, 6.0)
    assert all(end - start <= 6 * RATE for start, end in cuts)
    assert cuts[-1][1] == len(samples)


def _part(texts: list[str], length: float) -> Transcript:
    step = length / len(texts)
    segments = [
        Segment(
            i,
            0,
            i * step,
            (i + 1) * step,
            f" {text}",
            [1],
            0.0,
            -0.2,
            1.1,
            0.01,
            [Word(text, i * step, (i + 1) * step)],
        )
        for i, text in enumerate(texts)
    ]
    words = [Word(text, i * step, (i + 1) * step) for i, text in enumerate(texts)]
    return Transcript(" ".join(texts), "english", length, segments, words)


def test_stitch_offsets_every_timestamp_and_renumbers_segments():
    first, second = _part(["one", "two"], 10.0), _part(["three", "four"], 8.0)
    whole = stitch([(0.0, first), (10.0, second)], 18.0)
    assert whole.text == "one two three four"
    assert whole.duration == 18.0
    assert [s.id for s in whole.segments] == [0, 1, 2, 3]
    assert [(s.start, s.end) for s in whole.segments] == [(0, 5), (5, 10), (10, 14), (14, 18)]
    assert whole.segments[2].seek == 1000  # 10 s in Whisper's 10 ms frames
    assert whole.segments[3].words == [Word("four", 14.0, 18.0)]
    assert [w.start for w in whole.words] == [0.0, 5.0, 10.0, 14.0]
    assert whole.language == "english"


def test_stitch_keeps_words_absent_when_no_piece_had_them():
    part = Transcript("hi", "english", 2.0, [], None)
    assert stitch([(0.0, part), (2.0, part)], 4.0).words is None


@pytest.mark.parametrize("limit", [3.0, 5.5])
def test_plan_then_stitch_gives_monotonic_times(limit):
    samples = bursts(30.0)
    cuts = plan_cuts(samples, RATE, limit)
    parts = [(start / RATE, _part(["a", "b"], (end - start) / RATE)) for start, end in cuts]
    whole = stitch(parts, len(samples) / RATE)
    ends = [s.end for s in whole.segments]
    assert ends == sorted(ends)
    assert ends[-1] == pytest.approx(30.0, abs=1e-3)


def test_stitch_keeps_times_inside_each_piece():
    # Whisper may date a last word past the end of its audio.
    overshoot = Transcript(
        "end", "english", 5.0,
        [Segment(0, 0, 4.0, 5.6, " end", [1], 0.0, -0.2, 1.1, 0.01, [Word("end", 4.2, 5.6)])],
        [Word("end", 4.2, 5.6)],
    )  # fmt: skip
    whole = stitch([(0.0, overshoot), (5.0, overshoot)], 10.0)
    assert [(s.start, s.end) for s in whole.segments] == [(4.0, 5.0), (9.0, 10.0)]
    assert [(w.start, w.end) for w in whole.words] == [(4.2, 5.0), (9.2, 10.0)]


# --- speakers across pieces -----------------------------------------------------------------


def _spoken(label: str, start: float, end: float) -> Segment:
    return Segment(0, 0, start, end, " hi", [], 0.0, 0.0, 0.0, 0.0, speaker=label)


def _reference_audio(speaker: KnownSpeaker) -> np.ndarray:
    head, _, payload = speaker.reference.partition(",")
    assert head == "data:audio/wav;base64"
    with wave.open(io.BytesIO(base64.b64decode(payload))) as clip:
        assert (clip.getframerate(), clip.getnchannels()) == (RATE, 1)
        return np.frombuffer(clip.readframes(clip.getnframes()), dtype=np.int16)


def test_each_speaker_of_the_first_piece_gets_a_clip_of_their_own_voice():
    # A at 1000, B at -1000: a clip is made of its speaker's samples only.
    samples = np.concatenate([np.full(3 * RATE, 1000), np.full(4 * RATE, -1000),
                              np.full(2 * RATE, 1000)]).astype(np.int16)  # fmt: skip
    first = Transcript("", "", 9.0, [_spoken("A", 0, 3), _spoken("B", 3, 7), _spoken("A", 7, 9)])
    speakers = speakers_heard(samples, first, ())
    assert [s.name for s in speakers] == ["A", "B"]  # most heard first: A 5 s, B 4 s
    a, b = (_reference_audio(s) for s in speakers)
    assert (set(np.unique(a)), len(a)) == ({1000}, 5 * RATE)  # both of A's turns
    assert (set(np.unique(b)), len(b)) == ({-1000}, 4 * RATE)


def test_clips_are_kept_within_openais_2_to_10_seconds():
    samples = np.full(30 * RATE, 500, dtype=np.int16)
    first = Transcript("", "", 30.0, [_spoken("A", 0, 25), _spoken("B", 25, 25.5)])
    lengths = [len(_reference_audio(s)) / RATE for s in speakers_heard(samples, first, ())]
    assert lengths == [9.5, 2.5]  # A cut at 9.5 s; B's half second padded with silence


def test_the_clients_known_speakers_come_first_and_four_at_most():
    samples = np.full(20 * RATE, 500, dtype=np.int16)
    given = (KnownSpeaker("agent", "data:audio/wav;base64,AAAA"),)
    labels = ["agent", "A", "B", "C", "D"]
    segments = [_spoken(label, i * 3, i * 3 + 3) for i, label in enumerate(labels)]
    speakers = speakers_heard(samples, Transcript("", "", 20.0, segments), given)
    assert [s.name for s in speakers] == ["agent", "A", "B", "C"]
    assert speakers[0] == given[0]  # sent as the client sent it


def test_clips_take_a_format_the_upstream_accepts():
    samples = np.full(5 * RATE, 500, dtype=np.int16)
    first = Transcript("", "", 5.0, [_spoken("A", 0, 5)])
    [speaker] = speakers_heard(samples, first, (), ("mp3",))
    assert speaker.reference.startswith("data:audio/mpeg;base64,")


def test_stitch_keeps_each_segments_speaker():
    part = Transcript("hi", "english", 2.0, [_spoken("A", 0, 1), _spoken("B", 1, 2)])
    whole = stitch([(0.0, part), (2.0, part)], 4.0)
    assert [s.speaker for s in whole.segments] == ["A", "B", "A", "B"]
