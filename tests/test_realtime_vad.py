"""Server-side turn detection (gateway.realtime.vad) on real speech from the Piper provider.

Where speech really is comes from the waveform itself: the first and last sample louder
than 2 % of the utterance's peak. Silero judges 32 ms frames and lags a little at both
ends, so positions are checked within a few frames of that.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from faster_whisper.vad import get_vad_model
from openai.types.realtime.realtime_audio_input_turn_detection import SemanticVad, ServerVad

from gateway.audio.resample import StreamResampler
from gateway.realtime.protocol import RealtimeError
from gateway.realtime.vad import (
    FRAME_MS,
    FRAME_SAMPLES,
    MIN_SPEECH_MS,
    SpeechProbability,
    SpeechStarted,
    SpeechStopped,
    TurnDetection,
    TurnDetector,
    TurnTracker,
    sounds_finished,
)
from tests.speech_fixtures import PIPER_RATE, synthesize_english

START_TOLERANCE_MS = 3 * FRAME_MS
END_TOLERANCE_MS = 5 * FRAME_MS  # Silero's probability decays over a few frames
PARAM = "session.audio.input.turn_detection"


@dataclass(frozen=True)
class Utterance:
    pcm: np.ndarray  # int16 at 24 kHz, with Piper's own leading and trailing quiet
    onset_ms: float  # where the voice is, within pcm
    offset_ms: float


def _utterance(text: str) -> Utterance:
    pcm = synthesize_english(text)
    level = np.abs(pcm.astype(np.float64))
    loud = np.flatnonzero(level > 0.02 * level.max())
    return Utterance(pcm, loud[0] * 1000 / PIPER_RATE, loud[-1] * 1000 / PIPER_RATE)


@pytest.fixture(scope="module")
def booking() -> Utterance:
    return _utterance("I would like to book a table for two tonight.")


@pytest.fixture(scope="module")
def weather() -> Utterance:
    return _utterance("Can you tell me the weather tomorrow?")


class Timeline:
    """Audio laid end to end, remembering where each utterance's voice is (ms)."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.ms = 0.0
        self.voices: list[tuple[float, float]] = []

    def silence(self, ms: int) -> "Timeline":
        return self._add(np.zeros(ms * PIPER_RATE // 1000, dtype=np.int16))

    def noise(self, ms: int, amplitude: float, seed: int = 0) -> "Timeline":
        samples = np.random.default_rng(seed).normal(0, amplitude, ms * PIPER_RATE // 1000)
        return self._add(samples.astype(np.int16))

    def say(self, utterance: Utterance) -> "Timeline":
        self.voices.append((self.ms + utterance.onset_ms, self.ms + utterance.offset_ms))
        return self._add(utterance.pcm)

    def _add(self, pcm: np.ndarray) -> "Timeline":
        self.pieces.append(pcm)
        self.ms += len(pcm) * 1000 / PIPER_RATE
        return self

    @property
    def pcm(self) -> bytes:
        return np.concatenate(self.pieces).astype("<i2").tobytes()


def _feed_in_pieces(detector: TurnDetector, pcm: bytes, piece_bytes: int = 960):
    """Feed like a client streaming 20 ms appends: (event, position_ms when reported)."""
    reported = []
    for at in range(0, len(pcm), piece_bytes):
        for event in detector.feed(pcm[at : at + piece_bytes]):
            reported.append((event, detector.position_ms))
    return reported


def _events(config: TurnDetection, pcm: bytes) -> list:
    return [event for event, _ in _feed_in_pieces(TurnDetector(config), pcm)]


# --- Silero, streaming --------------------------------------------------------------------


def test_streaming_probabilities_equal_faster_whisper_batch(booking, weather):
    """Frame by frame, carrying h, c and the 64-sample context, gives exactly the
    probabilities of faster-whisper's one batch call over the same audio."""
    audio = Timeline().silence(300).say(booking).silence(700).say(weather).pcm
    resampler = StreamResampler(2, 3)
    samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768
    at_16k = np.concatenate([resampler.process(samples), resampler.flush()])
    at_16k = at_16k[: at_16k.size // FRAME_SAMPLES * FRAME_SAMPLES]
    batch = get_vad_model()(at_16k.copy())
    silero = SpeechProbability()
    streamed = [silero.frame(frame) for frame in at_16k.reshape(-1, FRAME_SAMPLES)]
    np.testing.assert_allclose(streamed, np.ravel(batch), atol=1e-5)
    assert max(streamed) > 0.9
    assert min(streamed) < 0.05  # speech and silence both there

    silero.reset()
    assert silero.frame(at_16k[:FRAME_SAMPLES]) == pytest.approx(float(batch[0]), abs=1e-5)


# --- server_vad on speech ------------------------------------------------------------------


def test_two_utterances_give_two_turns_where_the_speech_is(booking, weather):
    timeline = Timeline().silence(1000).say(booking).silence(1500).say(weather).silence(1500)
    detector = TurnDetector(TurnDetection())
    reported = _feed_in_pieces(detector, timeline.pcm)

    kinds = [type(event) for event, _ in reported]
    assert kinds == [SpeechStarted, SpeechStopped, SpeechStarted, SpeechStopped]
    for (started, _), (stopped, stop_seen_ms), (onset, offset) in zip(
        reported[::2], reported[1::2], timeline.voices, strict=True
    ):
        assert abs(started.speech_start_ms - onset) <= START_TOLERANCE_MS
        assert started.audio_start_ms == started.speech_start_ms - 300  # prefix_padding_ms
        assert abs(stopped.speech_end_ms - offset) <= END_TOLERANCE_MS
        # OpenAI's audio_end_ms closes the committed audio: the 500 ms of silence included,
        # and the stop is only known (reported) once that silence has been heard.
        assert 500 <= stopped.audio_end_ms - stopped.speech_end_ms < 500 + FRAME_MS
        assert stopped.audio_end_ms <= stop_seen_ms < stopped.audio_end_ms + 20 + FRAME_MS
    assert not detector.speaking
    assert detector.position_ms == int(timeline.ms)


def test_a_pause_shorter_than_silence_duration_stays_in_the_turn(booking, weather):
    """Back to back, Piper leaves about 350 ms of quiet between the sentences: one turn
    at OpenAI's 500 ms, two at 200 ms."""
    audio = Timeline().silence(500).say(booking).say(weather).silence(1200).pcm
    one_turn = _events(TurnDetection(), audio)
    assert [type(event) for event in one_turn] == [SpeechStarted, SpeechStopped]
    two_turns = _events(TurnDetection(silence_duration_ms=200), audio)
    assert [type(e) for e in two_turns] == [SpeechStarted, SpeechStopped] * 2
    assert one_turn[0] == two_turns[0]


def test_how_the_audio_is_cut_into_pieces_changes_nothing(booking):
    audio = Timeline().silence(700).say(booking).silence(900).pcm
    whole = TurnDetector(TurnDetection()).feed(audio)
    detector, pieces, at = TurnDetector(TurnDetection()), [], 0
    sizes = np.random.default_rng(7).integers(1, 1500, size=len(audio))  # in samples
    for size in sizes:
        if at >= len(audio):
            break
        pieces += detector.feed(audio[at : at + 2 * int(size)])
        at += 2 * int(size)
    assert pieces == whole
    assert len(whole) == 2


def test_no_turn_in_silence_low_noise_or_clicks():
    quiet = Timeline().silence(3000).noise(4000, amplitude=60).silence(500)
    clicks = np.zeros(4 * PIPER_RATE, dtype=np.int16)
    clicks[:: PIPER_RATE // 2] = 20000  # a loud one-sample click every 500 ms
    clicks[PIPER_RATE // 4 :: PIPER_RATE // 2] = -20000
    detector = TurnDetector(TurnDetection())
    assert _feed_in_pieces(detector, quiet.pcm + clicks.astype("<i2").tobytes()) == []
    assert not detector.speaking
    assert detector.silence_ms == 0


def test_prefix_padding_reaches_back_but_not_past_the_last_turn(booking, weather):
    timeline = Timeline().silence(1000).say(booking).silence(1500).say(weather).silence(800)
    no_padding = _events(TurnDetection(prefix_padding_ms=0), timeline.pcm)
    assert [e.audio_start_ms for e in no_padding[::2]] == [
        e.speech_start_ms for e in no_padding[::2]
    ]
    long_padding = _events(TurnDetection(prefix_padding_ms=5000), timeline.pcm)
    first_stop = long_padding[1]
    assert long_padding[0].audio_start_ms == 0  # the start of the session's audio
    assert long_padding[2].audio_start_ms == first_stop.audio_end_ms  # not into turn one
    assert [e.speech_start_ms for e in long_padding[::2]] == [
        e.speech_start_ms for e in no_padding[::2]
    ]


def test_a_higher_threshold_needs_surer_speech(booking):
    """Silero's probability climbs over the first frames of a word: 0.9 is reached later."""
    audio = Timeline().silence(500).say(booking).silence(800).pcm
    lenient, strict = (
        _events(TurnDetection(threshold=threshold), audio)[0].speech_start_ms
        for threshold in (0.5, 0.9)
    )
    assert lenient <= strict


# --- the turn rules on probabilities ---------------------------------------------------------


def _track(config: TurnDetection, probabilities: list[float]) -> list[tuple[int, object]]:
    """(frame index, event) for each event the tracker reports."""
    tracker = TurnTracker(config)
    steps = ((index, tracker.step(p)) for index, p in enumerate(probabilities))
    return [(index, event) for index, event in steps if event is not None]


def test_speech_starts_at_the_threshold_and_must_last():
    frames_needed = MIN_SPEECH_MS // FRAME_MS
    assert _track(TurnDetection(), [0.45] * 40) == []  # under the threshold
    assert _track(TurnDetection(), ([0.9] * (frames_needed - 1) + [0.1] * 5) * 4) == []
    # Frames between threshold - 0.15 and the threshold keep a started candidate going.
    [(index, started)] = _track(TurnDetection(), [0.1] * 3 + [0.9] + [0.4] * 10)
    assert index == 3 + frames_needed - 1
    assert started == SpeechStarted(audio_start_ms=0, speech_start_ms=3 * FRAME_MS)


def test_a_pause_needs_a_frame_below_threshold_minus_hysteresis():
    probabilities = [0.9] * 10 + [0.4] * 40 + [0.9] * 3 + [0.2] * 30
    events = _track(TurnDetection(prefix_padding_ms=0), probabilities)
    assert [type(event) for _, event in events] == [SpeechStarted, SpeechStopped]
    index, stopped = events[1]
    assert stopped.speech_end_ms == 53 * FRAME_MS  # not at the 0.4s: they are no pause
    assert stopped.audio_end_ms == (index + 1) * FRAME_MS
    assert stopped.audio_end_ms - stopped.speech_end_ms == 512  # 500 ms, in whole frames


def test_a_pause_ends_when_the_threshold_is_reached_again():
    tracker = TurnTracker(TurnDetection())
    for probability in [0.9] * 10 + [0.1] * 5:
        tracker.step(probability)
    assert tracker.speaking
    assert tracker.silence_ms == 5 * FRAME_MS
    tracker.step(0.4)  # between the thresholds: the pause goes on
    assert tracker.silence_ms == 6 * FRAME_MS
    tracker.step(0.6)
    assert tracker.silence_ms == 0


# --- semantic_vad ------------------------------------------------------------------------------


def _waited(utterance: Utterance, config: TurnDetection, hint: str | None) -> int:
    """The silence (ms) that ended the turn after `utterance`, the hint given each time a
    pause begins (as the lead's speculative transcription of the tail would be: a pause
    between words is followed by more speech, which makes its hint stale)."""
    detector = TurnDetector(config)
    audio = Timeline().silence(400).say(utterance).silence(5000).pcm
    paused = False
    for at in range(0, len(audio), 640):
        events = detector.feed(audio[at : at + 640])
        if hint is not None and detector.silence_ms > 0 and not paused:
            events += detector.hint_transcript(hint)
        paused = detector.silence_ms > 0
        for event in events:
            if isinstance(event, SpeechStopped):
                return event.audio_end_ms - event.speech_end_ms
    raise AssertionError("the turn never ended")


@pytest.mark.parametrize(
    ("eagerness", "finished", "unfinished"),
    [("high", 250, 800), ("medium", 500, 2000), ("auto", 500, 2000), ("low", 800, 4000)],
)
def test_semantic_vad_waits_longer_after_an_unfinished_sentence(
    booking, eagerness, finished, unfinished
):
    def waited(hint):
        return _waited(booking, TurnDetection(type="semantic_vad", eagerness=eagerness), hint)

    assert finished <= waited("I would like to book a table for two tonight.") < finished + 40
    assert unfinished <= waited("I would like to book a table for two and") < unfinished + 40
    assert unfinished <= waited("I would like to, um,") < unfinished + 40
    assert finished <= waited(None) < finished + 40  # no transcript yet: no extra wait
    assert finished <= waited("") < finished + 40  # nothing understood: the same


def test_a_hint_from_before_the_user_spoke_again_is_stale(booking, weather):
    """An 'and' heard in the first pause does not hold the turn open after the second."""
    detector = TurnDetector(TurnDetection(type="semantic_vad"))
    audio = Timeline().silence(400).say(booking).say(weather).silence(3000).pcm
    hinted, stops = False, []
    for at in range(0, len(audio), 640):
        stops += [e for e in detector.feed(audio[at : at + 640]) if isinstance(e, SpeechStopped)]
        if not hinted and detector.silence_ms > 0:
            assert detector.hint_transcript("I would like to book a table and") == []
            hinted = True
    [stopped] = stops
    assert 500 <= stopped.audio_end_ms - stopped.speech_end_ms < 540
    assert stopped.speech_end_ms > 2000  # after the second sentence


def test_a_late_hint_can_end_the_turn_at_once(booking):
    detector = TurnDetector(TurnDetection(type="semantic_vad"))
    audio = Timeline().silence(400).say(booking).pcm
    detector.feed(audio)
    detector.hint_transcript("I would like to book a table for two and")
    assert detector.feed(bytes(2 * PIPER_RATE)) == []  # a second of silence: still waiting
    assert detector.speaking
    assert detector.silence_ms >= 1000
    # A hint that covers less than the speech heard is ignored ...
    assert detector.hint_transcript("I would like.", through_ms=500) == []
    # ... one that covers the pause decides now: the silence heard is already enough.
    [stopped] = detector.hint_transcript("I would like to book a table for two tonight.")
    assert stopped.audio_end_ms - stopped.speech_end_ms >= 1000
    assert stopped.audio_end_ms <= detector.position_ms
    assert not detector.speaking
    assert detector.silence_ms == 0


def test_server_vad_ignores_hints(booking):
    waited = _waited(booking, TurnDetection(), "I would like to book a table for two and")
    assert 500 <= waited < 540


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("I would like a table.", True),
        ("Is it raining?", True),
        ("Stop!", True),
        ('He said "go."', True),
        ("(Fine.)  ", True),
        ("I think so.", True),
        ("I would like a table and", False),
        ("I would like a table, and.", False),
        ("Well, um.", False),
        ("I was thinking...", False),
        ("I was thinking…", False),
        ("First,", False),
        ("no punctuation", False),
        ("", False),
    ],
)
def test_sounds_finished(text, finished):
    assert sounds_finished(text) is finished


# --- TurnDetection ------------------------------------------------------------------------------


def test_defaults_are_openais_and_shapes_match_the_sdk_types():
    server = TurnDetection.from_event({"type": "server_vad"}, PARAM)
    assert server.as_dict() == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
        "idle_timeout_ms": None,
    }
    assert set(server.as_dict()) == set(ServerVad.model_fields)
    semantic = TurnDetection.from_event({"type": "semantic_vad"}, PARAM)
    assert semantic.as_dict() == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }
    assert set(semantic.as_dict()) == set(SemanticVad.model_fields)
    assert TurnDetection.from_event(None, PARAM) is None  # push-to-talk


def test_every_field_is_read_and_described_back():
    sent = {
        "type": "server_vad",
        "threshold": 0.7,
        "prefix_padding_ms": 0,
        "silence_duration_ms": 200,
        "create_response": False,
        "interrupt_response": False,
        "idle_timeout_ms": 6000,
    }
    assert TurnDetection.from_event(sent, PARAM).as_dict() == sent
    ServerVad.model_validate(sent)
    semantic = {"type": "semantic_vad", "eagerness": "low", "create_response": False}
    described = TurnDetection.from_event(semantic, PARAM).as_dict()
    assert described == {**semantic, "interrupt_response": True}
    SemanticVad.model_validate(described)
    # null reads as the default; a missing type as OpenAI's default type.
    assert TurnDetection.from_event({"threshold": None}, PARAM) == TurnDetection()
    assert TurnDetection.from_event({"threshold": 1}, PARAM).threshold == 1.0


@pytest.mark.parametrize(
    ("sent", "code", "param", "message"),
    [
        ("server_vad", "invalid_type", PARAM, "expected an object, but got a string"),
        ({"type": "vad"}, "invalid_value", f"{PARAM}.type", "'server_vad', 'semantic_vad'"),
        ({"type": 1}, "invalid_type", f"{PARAM}.type", "expected a string"),
        ({"threshold": "high"}, "invalid_type", f"{PARAM}.threshold", "expected a number"),
        ({"threshold": True}, "invalid_type", f"{PARAM}.threshold", "expected a number"),
        ({"threshold": 1.5}, "decimal_above_max_value", f"{PARAM}.threshold", "<= 1"),
        ({"threshold": -0.1}, "decimal_below_min_value", f"{PARAM}.threshold", ">= 0"),
        (
            {"silence_duration_ms": 200.5},
            "invalid_type",
            f"{PARAM}.silence_duration_ms",
            "expected an integer",
        ),
        (
            {"prefix_padding_ms": -1},
            "integer_below_min_value",
            f"{PARAM}.prefix_padding_ms",
            "Expected a value >= 0, but got -1 instead.",
        ),
        (
            {"idle_timeout_ms": 1000},
            "integer_below_min_value",
            f"{PARAM}.idle_timeout_ms",
            ">= 5000",
        ),
        (
            {"idle_timeout_ms": 60000},
            "integer_above_max_value",
            f"{PARAM}.idle_timeout_ms",
            "<= 30000",
        ),
        ({"create_response": "yes"}, "invalid_type", f"{PARAM}.create_response", "boolean"),
        ({"interrupt_response": 0}, "invalid_type", f"{PARAM}.interrupt_response", "boolean"),
        ({"pitch": 1}, "unknown_parameter", f"{PARAM}.pitch", f"'{PARAM}.pitch'"),
        ({"eagerness": "low"}, "unknown_parameter", f"{PARAM}.eagerness", "Unknown"),
        (
            {"type": "semantic_vad", "eagerness": "eager"},
            "invalid_value",
            f"{PARAM}.eagerness",
            "'low', 'medium', 'high', 'auto'",
        ),
        (
            {"type": "semantic_vad", "silence_duration_ms": 500},
            "unknown_parameter",
            f"{PARAM}.silence_duration_ms",
            "Unknown parameter",
        ),
        (
            {"type": "semantic_vad", "idle_timeout_ms": 5000},
            "unknown_parameter",
            f"{PARAM}.idle_timeout_ms",
            "Unknown parameter",
        ),
    ],
)
def test_invalid_turn_detection_is_refused_naming_the_field(sent, code, param, message):
    with pytest.raises(RealtimeError) as refused:
        TurnDetection.from_event(sent, PARAM)
    assert (refused.value.code, refused.value.param) == (code, param)
    assert message in refused.value.message


def test_new_settings_apply_to_the_turn_in_progress(booking):
    detector = TurnDetector(TurnDetection())
    detector.feed(Timeline().silence(300).say(booking).pcm)
    assert detector.speaking
    detector.config = TurnDetection(silence_duration_ms=1500)  # a session.update
    [stopped] = detector.feed(bytes(4 * PIPER_RATE))
    assert 1500 <= stopped.audio_end_ms - stopped.speech_end_ms < 1500 + FRAME_MS
