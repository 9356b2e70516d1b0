"""Long audio for upstreams with an upload or duration limit: cut at silences, then stitch.

`plan_cuts` chooses where to cut 16 kHz samples so every piece stays under a length: each
cut lands on the quietest 30 ms of the last quarter before that length, which is a pause
between words in speech, so no word is cut in two. `stitch` joins the pieces' transcripts
with each piece's start added to every timestamp, giving one transcript as if the whole file
had been heard at once.

A diarizing upstream labels speakers per request ("A" is whoever it heard first), so the
pieces' labels would not agree. As OpenAI suggests for long audio, `speakers_heard` takes,
from the first piece's transcript, a 2-10 s clip of each speaker it labelled; sent with
the later pieces as known_speaker_names[]/references[] (the first piece's labels, after
the client's own known speakers), those pieces name the same voices the same way.
"""

from dataclasses import replace

import numpy as np
import pybase64

from gateway.audio import transcode
from gateway.providers.base import KnownSpeaker, Segment, Transcript, Word

FRAME_SECONDS = 0.03
SEARCH_FRACTION = 0.25  # look for the quietest frame in this last part of a piece
SEEK_PER_SECOND = 100  # Whisper's `seek` counts 10 ms mel frames
MAX_KNOWN_SPEAKERS = 4  # OpenAI's limit on known_speaker_names[]
# A reference must last 2-10 s (OpenAI's rule); kept inside with room for re-encoding.
REFERENCE_SECONDS = (2.5, 9.5)


def plan_cuts(samples: np.ndarray, rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering `samples`, each at most `max_seconds` long."""
    total = len(samples)
    limit = max(int(max_seconds * rate), 1)
    frame = max(int(FRAME_SECONDS * rate), 1)
    pieces: list[tuple[int, int]] = []
    start = 0
    while total - start > limit:
        window_start = start + int(limit * (1 - SEARCH_FRACTION))
        window_end = start + limit
        cut = _quietest(samples, window_start, window_end, frame)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, total))
    return pieces


def _quietest(samples: np.ndarray, begin: int, end: int, frame: int) -> int:
    """The middle of the lowest-energy frame in samples[begin:end]."""
    window = samples[begin:end].astype(np.float32)
    count = len(window) // frame
    if count == 0:
        return end
    energy = np.square(window[: count * frame].reshape(count, frame)).mean(axis=1)
    # Among equally quiet frames prefer the latest, so pieces are as long as allowed.
    quietest = count - 1 - int(np.argmin(energy[::-1]))
    return begin + quietest * frame + frame // 2


def _shift(time: float, offset: float, length: float) -> float:
    # Whisper sometimes dates the last words past the end of its audio; keep every time
    # inside its piece so the stitched timeline stays monotonic and within the file.
    return round(offset + min(max(time, 0.0), length), 3)


def _shift_words(words: list[Word] | None, offset: float, length: float) -> list[Word]:
    return [
        Word(w.word, _shift(w.start, offset, length), _shift(w.end, offset, length))
        for w in words or []
    ]


def stitch(pieces: list[tuple[float, Transcript]], duration: float) -> Transcript:
    """One transcript from (start offset in seconds, transcript of that piece) pairs.

    Each piece's `duration` is its length: its times are kept within it.
    """
    segments: list[Segment] = []
    words: list[Word] = []
    any_words = False
    for offset, part in pieces:
        length = part.duration
        for segment in part.segments:
            segments.append(
                replace(
                    segment,
                    id=len(segments),
                    seek=segment.seek + round(offset * SEEK_PER_SECOND),
                    start=_shift(segment.start, offset, length),
                    end=_shift(segment.end, offset, length),
                    words=_shift_words(segment.words, offset, length),
                )
            )
        if part.words is not None:
            any_words = True
            words.extend(_shift_words(part.words, offset, length))
    text = " ".join(part.text.strip() for _, part in pieces if part.text.strip())
    language = next((part.language for _, part in pieces if part.language), "")
    return Transcript(
        text=text,
        language=language,
        duration=duration,
        segments=segments,
        words=words if any_words else None,
    )


# --- speakers across pieces -----------------------------------------------------------------


def speakers_heard(
    samples: np.ndarray,
    transcript: Transcript,
    given: tuple[KnownSpeaker, ...],
    accepted_formats: tuple[str, ...] = (),
) -> tuple[KnownSpeaker, ...]:
    """The known speakers to send with the pieces after the first: the client's own
    (`given`, as it sent them), then each other speaker `transcript` labelled in `samples`
    (the first piece, 16 kHz mono int16), named by its label, with a clip of its voice in
    a format the upstream accepts; at most four, the most heard first.
    """
    names = {speaker.name for speaker in given}
    heard = [
        KnownSpeaker(label, _data_url(clip, accepted_formats))
        for label, clip in _voice_clips(samples, transcode.RATE, transcript).items()
        if label not in names
    ]
    return (*given, *heard)[:MAX_KNOWN_SPEAKERS]


def _voice_clips(samples: np.ndarray, rate: int, transcript: Transcript) -> dict[str, np.ndarray]:
    """A clip of each labelled speaker, most heard first: their longest segments joined
    until the clip is long enough (cut at the longest), padded with silence if they said
    too little."""
    by_speaker: dict[str, list[np.ndarray]] = {}
    for segment in transcript.segments:
        start = max(int(segment.start * rate), 0)
        end = min(int(segment.end * rate), len(samples))
        if segment.speaker is not None and end > start:
            by_speaker.setdefault(segment.speaker, []).append(samples[start:end])
    shortest, longest = (int(seconds * rate) for seconds in REFERENCE_SECONDS)
    clips = {}
    for label, parts in sorted(by_speaker.items(), key=lambda item: -sum(map(len, item[1]))):
        voice = np.concatenate(sorted(parts, key=len, reverse=True))[:longest]
        clips[label] = np.pad(voice, (0, max(shortest - len(voice), 0)))
    return clips


def _data_url(clip: np.ndarray, accepted_formats: tuple[str, ...]) -> str:
    content, fmt = transcode.encode(clip, accepted_formats)
    payload = pybase64.b64encode(content).decode("ascii")
    return f"data:{transcode.CONTENT_TYPES[fmt]};base64,{payload}"
