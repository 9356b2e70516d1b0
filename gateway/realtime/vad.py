"""Server-side turn detection for the realtime socket: OpenAI's `server_vad` and `semantic_vad`.

`TurnDetection` is the session's `turn_detection` object, read from a client event and
described back in OpenAI's shape. `TurnDetector` listens to the session's input audio
(pcm16 at 24 kHz, in pieces of any size) and says when a turn starts and ends.

How a turn is found, frame by frame (32 ms frames at 16 kHz, Silero VAD v6's probability
that the frame is speech):
- Speech starts when the probability reaches `threshold` and stays at or above
  `threshold - 0.15` for MIN_SPEECH_MS; a shorter blip (a click, a cough) is no turn.
  `speech_start_ms` is the first such frame; `audio_start_ms`, as OpenAI reports it,
  is `prefix_padding_ms` earlier (never before the previous turn's end, nor before 0).
- While speaking, a pause starts at the first frame below `threshold - 0.15` and lasts
  until a frame reaches `threshold` again (frames in between neither end nor start it:
  Silero's hysteresis). When a pause has lasted the required silence, the turn ends:
  `speech_end_ms` is where the pause began, and `audio_end_ms` (OpenAI's: the end of the
  audio the turn commits, so it includes the silence) is where the silence was complete.
  The stop is only known then, so it is reported by the feed that reaches that point.

The required silence is `silence_duration_ms` for server_vad. For semantic_vad it comes
from `eagerness` and from the partial transcript of the turn (`hint_transcript`):
- a hint counts only if it covers the current pause, i.e. it was given (or says, with
  `through_ms`) that it transcribes the audio up to a point at or after where the pause
  began; a hint given before the user spoke again is stale and ignored, and a hint
  covering less than the one already given replaces nothing (it came out of order);
- a hint that `sounds_finished` gets the short wait; any other hint the long one;
- without a usable hint (or with an empty one) the short wait applies (the detector then
  acts as server_vad would), so a slow transcriber costs no latency, only the chance to
  wait for more.
The waits, in ms (short, long): high (250, 800), medium and auto (500, 2000), low
(800, 4000), within OpenAI's stated caps of 2, 4 and 8 s.
"""

import functools
import importlib.resources
import re
from dataclasses import dataclass

import numpy as np
import onnxruntime

from gateway.audio.resample import StreamResampler
from gateway.providers.base import PCM_RATE
from gateway.realtime.protocol import RealtimeError, invalid_type

SILERO_RATE = 16_000
FRAME_SAMPLES = 512  # what Silero v6 reads at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # the end of the previous frame, prepended to each frame
FRAME_MS = FRAME_SAMPLES * 1000 // SILERO_RATE
MIN_SPEECH_MS = 160  # shorter bursts of "speech" are clicks, coughs, a door
HYSTERESIS = 0.15  # a pause starts below threshold - 0.15, as in Silero's own splitter

TYPES = ("server_vad", "semantic_vad")
EAGERNESS = ("low", "medium", "high", "auto")
# eagerness -> (silence after a finished sentence, silence after an unfinished one), ms
SEMANTIC_WAITS = {
    "high": (250, 800),
    "medium": (500, 2000),
    "auto": (500, 2000),
    "low": (800, 4000),
}
IDLE_TIMEOUT_RANGE = (5000, 30000)  # OpenAI's bounds for idle_timeout_ms

_PCM_SCALE = 1 / 32768


# --- speech probability -----------------------------------------------------------------


@functools.cache
def _silero() -> onnxruntime.InferenceSession:
    """One Silero session per process: `run` is thread-safe and the state lives with the
    caller, so every detector shares it. One thread per call: sessions run side by side."""
    model = importlib.resources.files("faster_whisper") / "assets" / "silero_vad_v6.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    with importlib.resources.as_file(model) as path:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )


class SpeechProbability:
    """Silero VAD v6, streaming: the probability that each successive 32 ms frame is speech.

    Carries what faster-whisper's batch call carries from one frame to the next: the
    LSTM's h and c, and the previous frame's last 64 samples as the context of the next.
    """

    def __init__(self) -> None:
        self._session = _silero()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def frame(self, samples: np.ndarray) -> float:
        """The next frame's probability: FRAME_SAMPLES float32 samples at 16 kHz in [-1, 1]."""
        window = np.concatenate([self._context, samples]).reshape(1, -1)
        probability, self._h, self._c = self._session.run(
            None, {"input": window, "h": self._h, "c": self._c}
        )
        self._context = samples[-CONTEXT_SAMPLES:]
        return float(probability[0])


# --- configuration ----------------------------------------------------------------------


def _boolean(value, param: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(param, "a boolean", value)
    return value


def _integer(value, param: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(param, "an integer", value)
    if value < low:
        raise RealtimeError(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            "integer_below_min_value",
            param,
        )
    if high is not None and value > high:
        raise RealtimeError(
            f"Invalid '{param}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            "integer_above_max_value",
            param,
        )
    return value


def _fraction(value, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_type(param, "a number", value)
    if value < 0 or value > 1:
        side, bound, code = ("below minimum", ">= 0", "decimal_below_min_value")
        if value > 1:
            side, bound, code = ("above maximum", "<= 1", "decimal_above_max_value")
        raise RealtimeError(
            f"Invalid '{param}': decimal {side} value. Expected a value {bound}, "
            f"but got {value} instead.",
            code,
            param,
        )
    return float(value)


def _choice(value, param: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if value not in choices:
        raise RealtimeError(
            f"Invalid value: '{value[:64]}'. Supported values are: "
            + ", ".join(f"'{choice}'" for choice in choices)
            + ".",
            "invalid_value",
            param,
        )
    return value


# Each field's check: (value, param) -> the value.
_CHECKS = {
    "threshold": _fraction,
    "prefix_padding_ms": functools.partial(_integer, low=0),
    "silence_duration_ms": functools.partial(_integer, low=0),
    "idle_timeout_ms": functools.partial(
        _integer, low=IDLE_TIMEOUT_RANGE[0], high=IDLE_TIMEOUT_RANGE[1]
    ),
    "eagerness": functools.partial(_choice, choices=EAGERNESS),
    "create_response": _boolean,
    "interrupt_response": _boolean,
}
_SERVER_VAD_FIELDS = (
    "type",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    "create_response",
    "interrupt_response",
    "idle_timeout_ms",
)
_SEMANTIC_VAD_FIELDS = ("type", "eagerness", "create_response", "interrupt_response")


@dataclass(frozen=True)
class TurnDetection:
    """A session's turn_detection (None for push-to-talk). Defaults are OpenAI's."""

    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    eagerness: str = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None

    @classmethod
    def from_event(cls, value, param_prefix: str) -> "TurnDetection | None":
        """The turn_detection a client sent (null: push-to-talk, None), every field checked.

        `param_prefix` names the object in errors, e.g. "session.audio.input.turn_detection".
        A field of the other type (eagerness for server_vad, threshold for semantic_vad)
        is refused as unknown, as OpenAI's schema has it; null means the default.
        """
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid_type(param_prefix, "an object", value)
        kind = value.get("type")
        kind = "server_vad" if kind is None else _choice(kind, f"{param_prefix}.type", TYPES)
        known = _SERVER_VAD_FIELDS if kind == "server_vad" else _SEMANTIC_VAD_FIELDS
        for name in value:
            if name not in known:
                raise RealtimeError(
                    f"Unknown parameter: '{param_prefix}.{name}'.",
                    "unknown_parameter",
                    f"{param_prefix}.{name}",
                )
        fields = {
            name: _CHECKS[name](field, f"{param_prefix}.{name}")
            for name, field in value.items()
            if name != "type" and field is not None  # null: the default
        }
        return cls(type=kind, **fields)

    def as_dict(self) -> dict:
        """OpenAI's session shape for this type, every field present."""
        names = _SERVER_VAD_FIELDS if self.type == "server_vad" else _SEMANTIC_VAD_FIELDS
        return {name: getattr(self, name) for name in names}

    def required_silence_ms(self, transcript: str | None) -> int:
        """The silence that ends a turn, given the turn's partial transcript (if known)."""
        if self.type == "server_vad":
            return self.silence_duration_ms
        short, long = SEMANTIC_WAITS[self.eagerness]
        if transcript is None or not transcript.strip():
            return short  # nothing known (or nothing understood) of what was said
        return short if sounds_finished(transcript) else long


# Words a speaker trails off on when more is coming: conjunctions and fillers.
_TRAILING_WORDS = frozenset(
    ["and", "or", "but", "because", "um", "uh", "erm", "er", "hmm", "mm", "the", "a", "an"]
)
_LAST_WORD = re.compile(r"([\w']+)\W*$")


def sounds_finished(transcript: str) -> bool:
    """Whether a partial transcript ends like a finished sentence.

    True when, after trailing spaces and closing quotes or brackets, it ends with '.', '?'
    or '!' — but not with an ellipsis ('...', '…'), and not when its last word is a
    conjunction or filler ("and.", "um."), which a transcriber may punctuate anyway.
    Anything else ("and", "um", a comma, no punctuation, nothing) is unfinished.
    """
    text = transcript.rstrip().rstrip("\"')]}»”’").rstrip()
    if not text or text[-1] not in ".?!" or text.endswith(("...", "…")):
        return False
    last = _LAST_WORD.search(text)
    return last is None or last.group(1).lower() not in _TRAILING_WORDS


# --- turn detection ---------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    """input_audio_buffer.speech_started: `audio_start_ms` is OpenAI's (prefix included)."""

    audio_start_ms: int
    speech_start_ms: int  # where speech was heard, without the prefix padding


@dataclass(frozen=True)
class SpeechStopped:
    """input_audio_buffer.speech_stopped: `audio_end_ms` is OpenAI's (silence included)."""

    audio_end_ms: int
    speech_end_ms: int  # where the final pause began


VadEvent = SpeechStarted | SpeechStopped


class TurnTracker:
    """The turn logic on a sequence of frame probabilities (see the module docstring).

    Kept apart from the audio so its rules can be read, and checked, on probabilities.
    """

    def __init__(self, config: TurnDetection) -> None:
        self.config = config
        self.speaking = False
        self.heard_ms = 0  # end of the last frame judged
        self._onset_ms: int | None = None  # a candidate start, while not speaking
        self._pause_ms: int | None = None  # where the current pause began, while speaking
        self._turn_start_ms = 0
        self._last_end_ms = 0
        self._hint: tuple[str, int] | None = None  # (transcript, the ms it covers up to)

    @property
    def silence_ms(self) -> int:
        """The trailing silence of the turn in progress (0 when not speaking or not paused)."""
        return self.heard_ms - self._pause_ms if self._pause_ms is not None else 0

    @property
    def pause_start_ms(self) -> int | None:
        """Where the pause in the turn in progress began (None when not paused)."""
        return self._pause_ms

    def step(self, probability: float) -> VadEvent | None:
        """Judge the next frame; the event it completes, if any."""
        start_ms, self.heard_ms = self.heard_ms, self.heard_ms + FRAME_MS
        if self.speaking:
            return self._while_speaking(probability, start_ms)
        return self._while_quiet(probability, start_ms)

    def _while_quiet(self, probability: float, start_ms: int) -> SpeechStarted | None:
        if probability >= self.config.threshold and self._onset_ms is None:
            self._onset_ms = start_ms
        elif probability < self._pause_threshold:
            self._onset_ms = None
        if self._onset_ms is None or self.heard_ms - self._onset_ms < MIN_SPEECH_MS:
            return None
        self.speaking, self._turn_start_ms, self._onset_ms = True, self._onset_ms, None
        self._hint = None
        padded = self._turn_start_ms - self.config.prefix_padding_ms
        return SpeechStarted(max(padded, self._last_end_ms), self._turn_start_ms)

    def _while_speaking(self, probability: float, start_ms: int) -> SpeechStopped | None:
        if probability >= self.config.threshold:
            self._pause_ms = None
        elif probability < self._pause_threshold and self._pause_ms is None:
            self._pause_ms = start_ms
        return self._stop_if_silent_enough()

    @property
    def _pause_threshold(self) -> float:
        return self.config.threshold - HYSTERESIS

    def hint_transcript(self, text: str, through_ms: int) -> SpeechStopped | None:
        """The turn's partial transcript, covering its audio up to `through_ms`."""
        if not self.speaking:
            return None
        if self._hint is not None and through_ms < self._hint[1]:
            return None  # older than the transcript already known: it arrived out of order
        self._hint = (text, through_ms)
        return self._stop_if_silent_enough()

    def _usable_hint(self) -> str | None:
        if self._hint is None or self._pause_ms is None:
            return None
        text, through_ms = self._hint
        return text if through_ms >= self._pause_ms else None

    def _stop_if_silent_enough(self) -> SpeechStopped | None:
        if self._pause_ms is None:
            return None
        if self.silence_ms < self.config.required_silence_ms(self._usable_hint()):
            return None
        stopped = SpeechStopped(self.heard_ms, self._pause_ms)
        self.speaking, self._pause_ms, self._hint = False, None, None
        self._last_end_ms = self.heard_ms
        return stopped


class TurnDetector:
    """Turns in a session's input audio: pcm16 mono little-endian at 24 kHz, fed in pieces.

    All times are ms on the session's audio timeline: from the first byte ever fed.
    `probability` is a SpeechProbability (one is made when none is given).
    """

    def __init__(self, config: TurnDetection, probability: SpeechProbability | None = None):
        self._tracker = TurnTracker(config)
        self._probability = probability or SpeechProbability()
        self._resampler = StreamResampler(SILERO_RATE, PCM_RATE)
        self._frame = np.zeros(0, dtype=np.float32)  # 16 kHz samples short of a frame
        self._samples_fed = 0

    @property
    def config(self) -> TurnDetection:
        return self._tracker.config

    @config.setter
    def config(self, config: TurnDetection) -> None:
        """A session.update's new settings apply from the next frame; the turn goes on."""
        self._tracker.config = config

    @property
    def speaking(self) -> bool:
        return self._tracker.speaking

    @property
    def silence_ms(self) -> int:
        """Trailing silence while speaking: from where a pause began to the last frame heard.

        A pause that starts is the moment to transcribe the turn so far speculatively.
        """
        return self._tracker.silence_ms

    @property
    def pause_start_ms(self) -> int | None:
        """Where the turn's current pause began (None while the speaker is not paused)."""
        return self._tracker.pause_start_ms

    @property
    def position_ms(self) -> int:
        """How much audio has been fed, in ms (frames are judged up to 32 ms behind)."""
        return self._samples_fed * 1000 // PCM_RATE

    def feed(self, pcm24k: bytes) -> list[VadEvent]:
        """Listen to the next piece of audio; the turn events it completes, in order."""
        if len(pcm24k) % 2:
            raise ValueError("pcm16 audio must be a whole number of 16-bit samples")
        samples = np.frombuffer(pcm24k, dtype="<i2").astype(np.float32) * _PCM_SCALE
        self._samples_fed += samples.size
        pending = np.concatenate([self._frame, self._resampler.process(samples)])
        whole = pending.size - pending.size % FRAME_SAMPLES
        self._frame = pending[whole:]
        events = []
        for frame in pending[:whole].reshape(-1, FRAME_SAMPLES):
            event = self._tracker.step(self._probability.frame(frame))
            if event is not None:
                events.append(event)
        return events

    def hint_transcript(self, text: str, through_ms: int | None = None) -> list[VadEvent]:
        """semantic_vad: the partial transcript of the turn in progress, covering its audio
        up to `through_ms` (default: all fed so far). May end the turn at once when the
        silence already heard is enough for it; otherwise it shapes the next feeds."""
        through = self.position_ms if through_ms is None else through_ms
        stopped = self._tracker.hint_transcript(text, through)
        return [stopped] if stopped else []
